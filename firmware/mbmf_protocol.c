/* mbmf serial protocol, device side (see mbmf_protocol.h and docs/protocol.md). C99, no heap, no floats. */
#include "mbmf_protocol.h"

uint16_t mbmf_crc16(const uint8_t *data, size_t len)
{
    /* CRC-16/CCITT-FALSE: poly 0x1021, init 0xFFFF, no reflection, no final xor. Bitwise: no table in flash. */
    uint16_t crc = 0xFFFFu;
    size_t i;
    int b;
    for (i = 0; i < len; ++i) {
        crc ^= (uint16_t)((uint16_t)data[i] << 8);
        for (b = 0; b < 8; ++b)
            crc = (crc & 0x8000u) ? (uint16_t)((crc << 1) ^ 0x1021u) : (uint16_t)(crc << 1);
    }
    return crc;
}

size_t mbmf_cobs_encode(const uint8_t *in, size_t len, uint8_t *out)
{
    size_t read = 0, write = 1, code_at = 0;
    uint8_t code = 1;
    while (read < len) {
        if (in[read] == 0) {
            out[code_at] = code;
            code_at = write++;
            code = 1;
        } else {
            out[write++] = in[read];
            if (++code == 0xFFu) {
                out[code_at] = code;
                code_at = write++;
                code = 1;
            }
        }
        ++read;
    }
    out[code_at] = code;
    return write;
}

size_t mbmf_cobs_decode(const uint8_t *in, size_t len, uint8_t *out, size_t out_cap)
{
    size_t read = 0, write = 0, i;
    while (read < len) {
        uint8_t code = in[read];
        if (code == 0 || read + code > len)
            return 0;
        ++read;
        for (i = 1; i < code; ++i) {
            if (in[read] == 0 || write >= out_cap)
                return 0;
            out[write++] = in[read++];
        }
        if (code != 0xFFu && read < len) {
            if (write >= out_cap)
                return 0;
            out[write++] = 0;
        }
    }
    return write;
}

size_t mbmf_payload_size(uint8_t type)
{
    switch (type) {
    case MBMF_MOTOR_COMMAND: return MBMF_MOTOR_COMMAND_SIZE;
    case MBMF_TELEMETRY: return MBMF_TELEMETRY_SIZE;
    case MBMF_CONFIG: return MBMF_CONFIG_SIZE;
    case MBMF_CONFIG_ACK: return MBMF_CONFIG_ACK_SIZE;
    case MBMF_HEARTBEAT: return MBMF_HEARTBEAT_SIZE;
    default: return 0;
    }
}

size_t mbmf_wire_size(uint8_t type)
{
    size_t n = MBMF_HEADER_SIZE + mbmf_payload_size(type) + MBMF_CRC_SIZE;
    return n + 1u + n / 254u + 1u;
}

static void put_u16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v & 0xFFu); p[1] = (uint8_t)(v >> 8); }
static void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v & 0xFFu); p[1] = (uint8_t)((v >> 8) & 0xFFu);
    p[2] = (uint8_t)((v >> 16) & 0xFFu); p[3] = (uint8_t)(v >> 24);
}
static uint16_t get_u16(const uint8_t *p) { return (uint16_t)(p[0] | ((uint16_t)p[1] << 8)); }
static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
/* two's complement without implementation-defined conversions */
static uint16_t from_i16(int16_t v) { return (uint16_t)v; }
static int16_t to_i16(uint16_t v) { return v < 0x8000u ? (int16_t)v : (int16_t)((int32_t)v - 65536); }

size_t mbmf_encode_frame(uint8_t type, uint16_t seq, const uint8_t *payload, size_t payload_len, uint8_t *out,
                         size_t cap)
{
    uint8_t raw[MBMF_MAX_FRAME];
    size_t n, i, wire;
    if (payload_len != mbmf_payload_size(type) || payload_len == 0)
        return 0;
    n = MBMF_HEADER_SIZE + payload_len + MBMF_CRC_SIZE;
    if (cap < n + 2u)
        return 0;
    raw[0] = (uint8_t)MBMF_VERSION;
    raw[1] = type;
    put_u16(raw + 2, seq);
    for (i = 0; i < payload_len; ++i)
        raw[MBMF_HEADER_SIZE + i] = payload[i];
    put_u16(raw + MBMF_HEADER_SIZE + payload_len, mbmf_crc16(raw, MBMF_HEADER_SIZE + payload_len));
    wire = mbmf_cobs_encode(raw, n, out);
    out[wire++] = 0;
    return wire;
}

int mbmf_decode_frame(const uint8_t *chunk, size_t len, mbmf_frame *frame)
{
    uint8_t raw[MBMF_MAX_FRAME];
    size_t n = mbmf_cobs_decode(chunk, len, raw, sizeof raw), size, i;
    if (n < MBMF_HEADER_SIZE + MBMF_CRC_SIZE)
        return 0;
    if (mbmf_crc16(raw, n - MBMF_CRC_SIZE) != get_u16(raw + n - MBMF_CRC_SIZE))
        return 0;
    if (raw[0] != MBMF_VERSION)
        return 0;
    size = mbmf_payload_size(raw[1]);
    if (size == 0 || n != MBMF_HEADER_SIZE + size + MBMF_CRC_SIZE)
        return 0;
    frame->type = raw[1];
    frame->seq = get_u16(raw + 2);
    frame->payload_len = (uint8_t)size;
    for (i = 0; i < size; ++i)
        frame->payload[i] = raw[MBMF_HEADER_SIZE + i];
    return 1;
}

void mbmf_decoder_init(mbmf_decoder *d)
{
    d->len = 0;
    d->overflow = 0;
    d->frames_ok = 0;
    d->frames_corrupt = 0;
}

int mbmf_decoder_feed(mbmf_decoder *d, uint8_t byte, mbmf_frame *frame)
{
    int result = 0;
    if (byte != 0) {
        if (d->len < sizeof d->buf)
            d->buf[d->len++] = byte;
        else
            d->overflow = 1; /* longer than any frame: garbage or a lost delimiter; dropped at the next zero */
        return 0;
    }
    if (d->overflow) {
        result = -1;
    } else if (d->len > 0) { /* back-to-back delimiters are idle fill */
        result = mbmf_decode_frame(d->buf, d->len, frame) ? 1 : -1;
    }
    if (result == 1)
        ++d->frames_ok;
    else if (result == -1)
        ++d->frames_corrupt;
    d->len = 0;
    d->overflow = 0;
    return result;
}

size_t mbmf_pack_motor_command(const mbmf_motor_command *m, uint8_t *out)
{
    put_u16(out, from_i16(m->left));
    put_u16(out + 2, from_i16(m->right));
    return MBMF_MOTOR_COMMAND_SIZE;
}

size_t mbmf_pack_telemetry(const mbmf_telemetry *t, uint8_t *out)
{
    int i;
    put_u32(out, t->device_time_us);
    put_u16(out + 4, t->last_command_seq);
    out[6] = t->status;
    put_u16(out + 7, t->left_angle);
    put_u16(out + 9, t->right_angle);
    put_u16(out + 11, from_i16(t->left_speed));
    put_u16(out + 13, from_i16(t->right_speed));
    put_u16(out + 15, from_i16(t->left_back_emf));
    put_u16(out + 17, from_i16(t->right_back_emf));
    for (i = 0; i < 3; ++i) {
        put_u16(out + 19 + 2 * i, from_i16(t->gyro[i]));
        put_u16(out + 25 + 2 * i, from_i16(t->accel[i]));
    }
    put_u16(out + 31, t->battery_mv);
    return MBMF_TELEMETRY_SIZE;
}

size_t mbmf_pack_config(const mbmf_config *c, uint8_t *out)
{
    put_u16(out, c->kp);
    put_u16(out + 2, c->ki);
    put_u16(out + 4, c->kd);
    put_u16(out + 6, c->telemetry_rate_hz);
    put_u16(out + 8, c->command_timeout_ms);
    return MBMF_CONFIG_SIZE;
}

size_t mbmf_pack_config_ack(const mbmf_config_ack *a, uint8_t *out)
{
    put_u16(out, a->config_seq);
    mbmf_pack_config(&a->applied, out + 2);
    return MBMF_CONFIG_ACK_SIZE;
}

size_t mbmf_pack_heartbeat(const mbmf_heartbeat *h, uint8_t *out)
{
    put_u32(out, h->host_time_us);
    put_u32(out + 4, h->device_time_us);
    return MBMF_HEARTBEAT_SIZE;
}

int mbmf_unpack_motor_command(const mbmf_frame *f, mbmf_motor_command *m)
{
    if (f->type != MBMF_MOTOR_COMMAND)
        return 0;
    m->left = to_i16(get_u16(f->payload));
    m->right = to_i16(get_u16(f->payload + 2));
    return 1;
}

int mbmf_unpack_telemetry(const mbmf_frame *f, mbmf_telemetry *t)
{
    const uint8_t *p = f->payload;
    int i;
    if (f->type != MBMF_TELEMETRY)
        return 0;
    t->device_time_us = get_u32(p);
    t->last_command_seq = get_u16(p + 4);
    t->status = p[6];
    t->left_angle = get_u16(p + 7);
    t->right_angle = get_u16(p + 9);
    t->left_speed = to_i16(get_u16(p + 11));
    t->right_speed = to_i16(get_u16(p + 13));
    t->left_back_emf = to_i16(get_u16(p + 15));
    t->right_back_emf = to_i16(get_u16(p + 17));
    for (i = 0; i < 3; ++i) {
        t->gyro[i] = to_i16(get_u16(p + 19 + 2 * i));
        t->accel[i] = to_i16(get_u16(p + 25 + 2 * i));
    }
    t->battery_mv = get_u16(p + 31);
    return 1;
}

int mbmf_unpack_config(const mbmf_frame *f, mbmf_config *c)
{
    if (f->type != MBMF_CONFIG)
        return 0;
    c->kp = get_u16(f->payload);
    c->ki = get_u16(f->payload + 2);
    c->kd = get_u16(f->payload + 4);
    c->telemetry_rate_hz = get_u16(f->payload + 6);
    c->command_timeout_ms = get_u16(f->payload + 8);
    return 1;
}

int mbmf_unpack_config_ack(const mbmf_frame *f, mbmf_config_ack *a)
{
    mbmf_frame inner;
    size_t i;
    if (f->type != MBMF_CONFIG_ACK)
        return 0;
    a->config_seq = get_u16(f->payload);
    inner.type = MBMF_CONFIG;
    for (i = 0; i < MBMF_CONFIG_SIZE; ++i)
        inner.payload[i] = f->payload[2 + i];
    return mbmf_unpack_config(&inner, &a->applied);
}

int mbmf_unpack_heartbeat(const mbmf_frame *f, mbmf_heartbeat *h)
{
    if (f->type != MBMF_HEARTBEAT)
        return 0;
    h->host_time_us = get_u32(f->payload);
    h->device_time_us = get_u32(f->payload + 4);
    return 1;
}
