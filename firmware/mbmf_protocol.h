/* mbmf serial protocol, device side: framing, CRC-16 and the messages of docs/protocol.md.
 *
 * Portable C99: no heap, no floating point, no I/O. A frame before stuffing is
 *   version (u8) | type (u8) | seq (u16) | payload (fixed size per type) | CRC-16 (u16)
 * little-endian, CRC-16/CCITT-FALSE over every byte before it; on the wire it is COBS-encoded and
 * followed by one 0x00 delimiter, so a receiver resynchronises at the next zero after any corruption.
 */
#ifndef MBMF_PROTOCOL_H
#define MBMF_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MBMF_VERSION 1u

#define MBMF_MOTOR_COMMAND 0x01u /* host -> device */
#define MBMF_TELEMETRY 0x02u     /* device -> host */
#define MBMF_CONFIG 0x03u        /* host -> device */
#define MBMF_CONFIG_ACK 0x04u    /* device -> host */
#define MBMF_HEARTBEAT 0x05u     /* both ways: the device echoes each host heartbeat */

#define MBMF_HEADER_SIZE 4u
#define MBMF_CRC_SIZE 2u
#define MBMF_MOTOR_COMMAND_SIZE 4u
#define MBMF_TELEMETRY_SIZE 33u
#define MBMF_CONFIG_SIZE 10u
#define MBMF_CONFIG_ACK_SIZE 12u
#define MBMF_HEARTBEAT_SIZE 8u
#define MBMF_MAX_PAYLOAD MBMF_TELEMETRY_SIZE
#define MBMF_MAX_FRAME (MBMF_HEADER_SIZE + MBMF_MAX_PAYLOAD + MBMF_CRC_SIZE)
/* COBS adds one byte per 254 (frames here are shorter) plus the delimiter */
#define MBMF_MAX_WIRE (MBMF_MAX_FRAME + 2u)

#define MBMF_SETPOINT_MAX 32767 /* Q15: 32767 = full crank speed forward */

/* telemetry status bits */
#define MBMF_STATUS_WATCHDOG_STOPPED 0x01u
#define MBMF_STATUS_CONFIGURED 0x02u
#define MBMF_STATUS_LOW_BATTERY 0x04u
#define MBMF_STATUS_RX_ERROR 0x08u

typedef struct {
    int16_t left, right; /* Q15 setpoints, [-32767, 32767] */
} mbmf_motor_command;

typedef struct {
    uint32_t device_time_us;
    uint16_t last_command_seq;
    uint8_t status;
    uint16_t left_angle, right_angle;     /* crank angle * 65536 / (2 pi) */
    int16_t left_speed, right_speed;      /* 0.01 rad/s */
    int16_t left_back_emf, right_back_emf; /* mV */
    int16_t gyro[3];                      /* 0.001 rad/s, body frame x forward, y left, z up */
    int16_t accel[3];                     /* 0.01 m/s^2, specific force, body frame */
    uint16_t battery_mv;
} mbmf_telemetry;

typedef struct {
    uint16_t kp, ki, kd;       /* Q8.8 */
    uint16_t telemetry_rate_hz;
    uint16_t command_timeout_ms;
} mbmf_config;

typedef struct {
    uint16_t config_seq;
    mbmf_config applied;
} mbmf_config_ack;

typedef struct {
    uint32_t host_time_us;
    uint32_t device_time_us;
} mbmf_heartbeat;

typedef struct {
    uint8_t type;
    uint16_t seq;
    uint8_t payload_len;
    uint8_t payload[MBMF_MAX_PAYLOAD];
} mbmf_frame;

/* Streaming decoder state: feed it one byte at a time. */
typedef struct {
    uint8_t buf[MBMF_MAX_WIRE];
    size_t len;
    uint8_t overflow;
    uint32_t frames_ok;
    uint32_t frames_corrupt;
} mbmf_decoder;

uint16_t mbmf_crc16(const uint8_t *data, size_t len);
/* COBS: returns the encoded length (len + 1 for len < 254), out must hold len + 1 + len / 254 bytes */
size_t mbmf_cobs_encode(const uint8_t *in, size_t len, uint8_t *out);
/* returns the decoded length, or 0 when the stuffing is broken or out_cap is too small */
size_t mbmf_cobs_decode(const uint8_t *in, size_t len, uint8_t *out, size_t out_cap);

/* payload size of a message type, 0 for an unknown type */
size_t mbmf_payload_size(uint8_t type);
/* wire size of one frame of this type (delimiter included) */
size_t mbmf_wire_size(uint8_t type);

/* Encodes one frame (stuffed, delimiter appended) into out; returns its length, 0 if cap is too small or
 * payload_len does not match the type. */
size_t mbmf_encode_frame(uint8_t type, uint16_t seq, const uint8_t *payload, size_t payload_len, uint8_t *out,
                         size_t cap);
/* Decodes the bytes between two delimiters; returns 1 and fills frame, or 0 when any check fails. */
int mbmf_decode_frame(const uint8_t *chunk, size_t len, mbmf_frame *frame);

void mbmf_decoder_init(mbmf_decoder *d);
/* Returns 1 when byte completed a good frame (in frame), -1 when it completed a corrupt one, 0 otherwise. */
int mbmf_decoder_feed(mbmf_decoder *d, uint8_t byte, mbmf_frame *frame);

/* Payload packing (little-endian), each returns the payload size. */
size_t mbmf_pack_motor_command(const mbmf_motor_command *m, uint8_t *out);
size_t mbmf_pack_telemetry(const mbmf_telemetry *t, uint8_t *out);
size_t mbmf_pack_config(const mbmf_config *c, uint8_t *out);
size_t mbmf_pack_config_ack(const mbmf_config_ack *a, uint8_t *out);
size_t mbmf_pack_heartbeat(const mbmf_heartbeat *h, uint8_t *out);
/* Unpacking: return 1, or 0 when the frame is of another type. */
int mbmf_unpack_motor_command(const mbmf_frame *f, mbmf_motor_command *m);
int mbmf_unpack_telemetry(const mbmf_frame *f, mbmf_telemetry *t);
int mbmf_unpack_config(const mbmf_frame *f, mbmf_config *c);
int mbmf_unpack_config_ack(const mbmf_frame *f, mbmf_config_ack *a);
int mbmf_unpack_heartbeat(const mbmf_frame *f, mbmf_heartbeat *h);

#ifdef __cplusplus
}
#endif
#endif
