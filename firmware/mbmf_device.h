/* The device side of the mbmf protocol for a two-motor board: commands in, telemetry out, and the board's own
 * command watchdog (motors to zero when commands stop). C99, no heap, no floats: call it from the main loop
 * with the byte received and a microsecond clock (see examples/velociroach_board). */
#ifndef MBMF_DEVICE_H
#define MBMF_DEVICE_H

#include "mbmf_protocol.h"

#ifdef __cplusplus
extern "C" {
#endif

/* limits the device applies to a CONFIG (the CONFIG_ACK reports the values after them) */
#define MBMF_MIN_TELEMETRY_HZ 1u
#define MBMF_MAX_TELEMETRY_HZ 200u
#define MBMF_MIN_TIMEOUT_MS 20u
#define MBMF_MAX_TIMEOUT_MS 5000u

typedef struct {
    mbmf_decoder decoder;
    mbmf_config config;
    uint16_t tx_seq;             /* seq of the next frame this device sends */
    uint16_t last_command_seq;   /* seq of the last MOTOR_COMMAND received intact */
    uint32_t last_command_us;
    uint32_t last_telemetry_us;
    uint8_t have_command;
    uint8_t configured;
    uint8_t rx_error;            /* a corrupt frame since the last telemetry */
    uint8_t watchdog_stopped;    /* the motors are at zero because commands stopped */
    int16_t setpoint_left;       /* what the motor controllers get, Q15 */
    int16_t setpoint_right;
    uint32_t watchdog_stops;     /* times the watchdog zeroed running motors */
    uint32_t commands;           /* motor commands received */
} mbmf_device;

void mbmf_device_init(mbmf_device *dev, const mbmf_config *defaults);
/* Feed one received byte. Returns the length of a reply frame written to reply (a HEARTBEAT echo or a
 * CONFIG_ACK), 0 if none. A MOTOR_COMMAND sets the setpoints and feeds the watchdog. */
size_t mbmf_device_receive(mbmf_device *dev, uint8_t byte, uint32_t now_us, uint8_t *reply, size_t cap);
/* The watchdog: call often. Zeroes the setpoints when no command came for config.command_timeout_ms. */
void mbmf_device_update(mbmf_device *dev, uint32_t now_us);
/* 1 when a telemetry frame is due at the configured rate */
int mbmf_device_telemetry_due(const mbmf_device *dev, uint32_t now_us);
/* Completes t (time, last command seq, status; the caller filled the sensor fields) and encodes it into out.
 * Returns the frame length, 0 if cap is too small. */
size_t mbmf_device_telemetry(mbmf_device *dev, mbmf_telemetry *t, uint8_t battery_low, uint32_t now_us,
                             uint8_t *out, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
