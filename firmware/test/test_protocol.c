/* Unit tests of the device side (run by the test suite: cc -std=c99 ... && ./test_protocol). */
#include <stdio.h>
#include <string.h>

#include "../mbmf_device.h"
#include "../mbmf_protocol.h"

static int failures = 0;
#define CHECK(cond) do { if (!(cond)) { ++failures; printf("FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); } } while (0)

static void test_crc(void)
{
    const uint8_t check[] = "123456789";
    CHECK(mbmf_crc16(check, 9) == 0x29B1u);
    CHECK(mbmf_crc16(check, 0) == 0xFFFFu);
}

static void test_cobs(void)
{
    uint8_t in[600], enc[700], dec[700];
    size_t n, m, len, i;
    size_t lens[] = {0, 1, 2, 253, 254, 255, 300, 508, 600};
    for (i = 0; i < sizeof lens / sizeof lens[0]; ++i) {
        size_t k;
        len = lens[i];
        for (k = 0; k < len; ++k)
            in[k] = (uint8_t)((k * 7u + i) % 5u == 0 ? 0 : k * 13u + 1u);
        n = mbmf_cobs_encode(in, len, enc);
        CHECK(n == len + 1 + len / 254 || n <= len + 1 + len / 254);
        CHECK(memchr(enc, 0, n) == NULL);
        m = mbmf_cobs_decode(enc, n, dec, sizeof dec);
        CHECK(m == len || (len == 0 && m == 0));
        CHECK(memcmp(in, dec, len) == 0);
    }
    { /* all zeros */
        uint8_t z[4] = {0, 0, 0, 0};
        n = mbmf_cobs_encode(z, 4, enc);
        CHECK(n == 5);
        CHECK(enc[0] == 1 && enc[4] == 1);
        CHECK(mbmf_cobs_decode(enc, n, dec, sizeof dec) == 4);
    }
    { /* broken stuffing */
        uint8_t bad[3] = {5, 1, 2};
        CHECK(mbmf_cobs_decode(bad, 3, dec, sizeof dec) == 0);
        CHECK(mbmf_cobs_decode(enc, n, dec, 2) == 0); /* too small an output */
    }
}

static void test_sizes(void)
{
    CHECK(mbmf_payload_size(MBMF_MOTOR_COMMAND) == 4);
    CHECK(mbmf_payload_size(MBMF_TELEMETRY) == 33);
    CHECK(mbmf_payload_size(MBMF_CONFIG) == 10);
    CHECK(mbmf_payload_size(MBMF_CONFIG_ACK) == 12);
    CHECK(mbmf_payload_size(MBMF_HEARTBEAT) == 8);
    CHECK(mbmf_payload_size(0x42) == 0);
    CHECK(mbmf_wire_size(MBMF_MOTOR_COMMAND) == 12);
    CHECK(mbmf_wire_size(MBMF_TELEMETRY) == 41);
}

static void test_frames(void)
{
    mbmf_telemetry t, u;
    uint8_t payload[MBMF_MAX_PAYLOAD], wire[MBMF_MAX_WIRE];
    mbmf_frame f;
    size_t n, i;
    memset(&t, 0, sizeof t);
    t.device_time_us = 0xFEDCBA98u;
    t.last_command_seq = 65535;
    t.status = 0x0B;
    t.left_angle = 0;
    t.right_angle = 65535;
    t.left_speed = -32768;
    t.right_speed = 32767;
    t.left_back_emf = -1;
    t.right_back_emf = 1234;
    t.gyro[0] = -1000; t.gyro[1] = 0; t.gyro[2] = 256;
    t.accel[0] = 1; t.accel[1] = -981; t.accel[2] = 981;
    t.battery_mv = 3900;
    mbmf_pack_telemetry(&t, payload);
    n = mbmf_encode_frame(MBMF_TELEMETRY, 513, payload, MBMF_TELEMETRY_SIZE, wire, sizeof wire);
    CHECK(n == 41);
    CHECK(wire[n - 1] == 0);
    CHECK(memchr(wire, 0, n - 1) == NULL);
    CHECK(mbmf_decode_frame(wire, n - 1, &f) == 1);
    CHECK(f.type == MBMF_TELEMETRY && f.seq == 513 && f.payload_len == 33);
    CHECK(mbmf_unpack_telemetry(&f, &u) == 1);
    CHECK(u.device_time_us == t.device_time_us && u.last_command_seq == 65535 && u.status == 0x0B);
    CHECK(u.left_speed == -32768 && u.right_speed == 32767 && u.left_back_emf == -1);
    CHECK(u.gyro[0] == -1000 && u.gyro[2] == 256 && u.accel[1] == -981 && u.battery_mv == 3900);
    CHECK(mbmf_unpack_motor_command(&f, (mbmf_motor_command *)payload) == 0); /* wrong type */
    /* every single-byte change of the stuffed frame is detected */
    for (i = 0; i + 1 < n; ++i) {
        uint8_t copy[MBMF_MAX_WIRE];
        int v;
        for (v = 1; v < 256; v += 37) {
            memcpy(copy, wire, n);
            copy[i] = (uint8_t)(copy[i] ^ v);
            if (copy[i] == 0)
                continue; /* a new delimiter: the decoder sees two short chunks, tested below */
            CHECK(mbmf_decode_frame(copy, n - 1, &f) == 0);
        }
    }
    /* wrong payload size for the type */
    CHECK(mbmf_encode_frame(MBMF_MOTOR_COMMAND, 1, payload, 5, wire, sizeof wire) == 0);
    CHECK(mbmf_encode_frame(MBMF_TELEMETRY, 1, payload, 33, wire, 20) == 0);
}

static void test_decoder_resync(void)
{
    mbmf_decoder d;
    mbmf_frame f;
    mbmf_motor_command c = {1000, -1000}, got;
    uint8_t payload[4], wire[MBMF_MAX_WIRE], stream[400];
    size_t n, len = 0, i;
    int ok = 0, bad = 0, r;
    mbmf_pack_motor_command(&c, payload);
    n = mbmf_encode_frame(MBMF_MOTOR_COMMAND, 7, payload, 4, wire, sizeof wire);
    for (i = 0; i < 100; ++i) /* garbage with no delimiter: longer than any frame */
        stream[len++] = (uint8_t)((i * 31u) % 255u + 1u);
    stream[len++] = 0;
    memcpy(stream + len, wire, n); len += n;
    memcpy(stream + len, wire, 5); len += 5; /* a frame cut short by a delimiter */
    stream[len++] = 0;
    stream[len++] = 0; /* idle fill */
    memcpy(stream + len, wire, n); len += n;
    mbmf_decoder_init(&d);
    for (i = 0; i < len; ++i) {
        r = mbmf_decoder_feed(&d, stream[i], &f);
        if (r == 1) {
            ++ok;
            CHECK(mbmf_unpack_motor_command(&f, &got) == 1 && got.left == 1000 && got.right == -1000 && f.seq == 7);
        } else if (r == -1) {
            ++bad;
        }
    }
    CHECK(ok == 2 && bad == 2);
    CHECK(d.frames_ok == 2 && d.frames_corrupt == 2);
}

static size_t feed_all(mbmf_device *dev, const uint8_t *wire, size_t n, uint32_t now, uint8_t *reply, size_t cap)
{
    size_t i, r, total = 0;
    for (i = 0; i < n; ++i) {
        r = mbmf_device_receive(dev, wire[i], now, reply + total, cap - total);
        total += r;
    }
    return total;
}

static void test_device(void)
{
    mbmf_config defaults = {256, 0, 0, 100, 250};
    mbmf_device dev;
    mbmf_motor_command c = {-32768, 16384};
    mbmf_config cfg = {512, 10, 1, 1000, 5};
    mbmf_heartbeat hb = {123456u, 0};
    mbmf_telemetry t;
    mbmf_frame f;
    mbmf_config_ack ack;
    uint8_t payload[MBMF_MAX_PAYLOAD], wire[MBMF_MAX_WIRE], reply[4 * MBMF_MAX_WIRE];
    size_t n, r;
    uint32_t t0 = 0xFFFFFF00u; /* 256 us before the clock wraps */

    mbmf_device_init(&dev, &defaults);
    CHECK(dev.watchdog_stopped == 1 && dev.setpoint_left == 0);
    mbmf_pack_motor_command(&c, payload);
    n = mbmf_encode_frame(MBMF_MOTOR_COMMAND, 42, payload, 4, wire, sizeof wire);
    CHECK(feed_all(&dev, wire, n, t0, reply, sizeof reply) == 0);
    CHECK(dev.setpoint_left == -32767 && dev.setpoint_right == 16384); /* -32768 clamped */
    CHECK(dev.last_command_seq == 42 && dev.watchdog_stopped == 0);
    mbmf_device_update(&dev, t0 + 250000u); /* exactly the timeout, across the wrap: still running */
    CHECK(dev.setpoint_right == 16384);
    mbmf_device_update(&dev, t0 + 250001u);
    CHECK(dev.setpoint_left == 0 && dev.setpoint_right == 0 && dev.watchdog_stopped == 1 && dev.watchdog_stops == 1);
    memset(&t, 0, sizeof t);
    n = mbmf_device_telemetry(&dev, &t, 0, t0 + 260000u, wire, sizeof wire);
    CHECK(n == 41 && mbmf_decode_frame(wire, n - 1, &f) == 1);
    CHECK(t.status == MBMF_STATUS_WATCHDOG_STOPPED && t.last_command_seq == 42 && f.seq == 0);

    /* config: clamped to the device's limits, acknowledged with the applied values */
    mbmf_pack_config(&cfg, payload);
    n = mbmf_encode_frame(MBMF_CONFIG, 43, payload, MBMF_CONFIG_SIZE, wire, sizeof wire);
    r = feed_all(&dev, wire, n, t0 + 300000u, reply, sizeof reply);
    CHECK(r == mbmf_wire_size(MBMF_CONFIG_ACK));
    CHECK(mbmf_decode_frame(reply, r - 1, &f) == 1 && mbmf_unpack_config_ack(&f, &ack) == 1);
    CHECK(ack.config_seq == 43 && ack.applied.kp == 512 && ack.applied.telemetry_rate_hz == MBMF_MAX_TELEMETRY_HZ);
    CHECK(ack.applied.command_timeout_ms == MBMF_MIN_TIMEOUT_MS && f.seq == 1);
    CHECK(dev.config.command_timeout_ms == MBMF_MIN_TIMEOUT_MS && dev.configured == 1);

    /* heartbeat echo with the device time */
    mbmf_pack_heartbeat(&hb, payload);
    n = mbmf_encode_frame(MBMF_HEARTBEAT, 44, payload, MBMF_HEARTBEAT_SIZE, wire, sizeof wire);
    r = feed_all(&dev, wire, n, 777u, reply, sizeof reply);
    CHECK(r == 16 && mbmf_decode_frame(reply, r - 1, &f) == 1 && mbmf_unpack_heartbeat(&f, &hb) == 1);
    CHECK(hb.host_time_us == 123456u && hb.device_time_us == 777u);

    /* a heartbeat does not feed the motor watchdog */
    CHECK(dev.watchdog_stopped == 1);

    /* corrupt bytes set the RX error flag until the next telemetry */
    wire[3] ^= 0x40;
    feed_all(&dev, wire, n, 800u, reply, sizeof reply);
    CHECK(dev.rx_error == 1 && dev.decoder.frames_corrupt == 1);
    memset(&t, 0, sizeof t);
    mbmf_device_telemetry(&dev, &t, 1, 900u, wire, sizeof wire);
    CHECK(t.status == (MBMF_STATUS_WATCHDOG_STOPPED | MBMF_STATUS_CONFIGURED | MBMF_STATUS_LOW_BATTERY | MBMF_STATUS_RX_ERROR));
    CHECK(dev.rx_error == 0);
}

static void test_telemetry_schedule(void)
{
    mbmf_config defaults = {256, 0, 0, 100, 250};
    mbmf_device dev;
    mbmf_telemetry t;
    uint8_t wire[MBMF_MAX_WIRE];
    uint32_t now;
    int sent = 0;
    mbmf_device_init(&dev, &defaults);
    memset(&t, 0, sizeof t);
    for (now = 1000u; now <= 1000000u; now += 1000u) { /* a 1 kHz main loop for one second */
        if (mbmf_device_telemetry_due(&dev, now)) {
            mbmf_device_telemetry(&dev, &t, 0, now, wire, sizeof wire);
            ++sent;
        }
    }
    CHECK(sent == 100);
}

int main(void)
{
    test_crc();
    test_cobs();
    test_sizes();
    test_frames();
    test_decoder_resync();
    test_device();
    test_telemetry_schedule();
    if (failures) {
        printf("%d check(s) failed\n", failures);
        return 1;
    }
    printf("all firmware tests passed\n");
    return 0;
}
