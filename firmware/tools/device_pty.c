/* A two-motor board on a pseudo-terminal, for testing the host side against the device code (POSIX).
 *
 *   device_pty [SECONDS]     open a pty, print its path on the first line of stdout, then be the board:
 *                            commands set two simulated cranks' speeds (full scale 30 rad/s), telemetry at the
 *                            configured rate, the device watchdog; every frame received intact is re-encoded
 *                            from its decoded fields and compared with the bytes received (byte-for-byte
 *                            agreement of the two implementations). SIGTERM/SIGINT or SECONDS end it with a
 *                            summary line on stdout: "summary commands=.. watchdog_stops=.. ...".
 *   device_pty --vectors     print reference frames (name and hex), for the host's encoder to match.
 */
#define _XOPEN_SOURCE 600
#define _DEFAULT_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "../mbmf_device.h"

static volatile sig_atomic_t stop = 0;
static void on_signal(int sig) { (void)sig; stop = 1; }

static uint32_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint32_t)((uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u);
}

static void print_hex(const char *name, const uint8_t *p, size_t n)
{
    size_t i;
    printf("%s ", name);
    for (i = 0; i < n; ++i)
        printf("%02x", p[i]);
    printf("\n");
}

static int vectors(void)
{
    uint8_t payload[MBMF_MAX_PAYLOAD], wire[MBMF_MAX_WIRE];
    size_t n;
    mbmf_motor_command c1 = {32767, -32767}, c2 = {0, 0}, c3 = {-16384, 256};
    mbmf_telemetry t = {0xFEDCBA98u, 65535, 0x0B, 0, 65535, -32768, 32767, -1, 1234,
                        {-1000, 0, 256}, {1, -981, 981}, 3900};
    mbmf_config cfg = {256, 13, 0, 100, 250};
    mbmf_config_ack ack = {7, {256, 13, 0, 100, 250}};
    mbmf_heartbeat hb = {0x01020304u, 0};
    mbmf_pack_motor_command(&c1, payload);
    n = mbmf_encode_frame(MBMF_MOTOR_COMMAND, 1, payload, 4, wire, sizeof wire);
    print_hex("motor_command_full", wire, n);
    mbmf_pack_motor_command(&c2, payload);
    n = mbmf_encode_frame(MBMF_MOTOR_COMMAND, 0, payload, 4, wire, sizeof wire);
    print_hex("motor_command_zero", wire, n);
    mbmf_pack_motor_command(&c3, payload);
    n = mbmf_encode_frame(MBMF_MOTOR_COMMAND, 65535, payload, 4, wire, sizeof wire);
    print_hex("motor_command_mixed", wire, n);
    mbmf_pack_telemetry(&t, payload);
    n = mbmf_encode_frame(MBMF_TELEMETRY, 513, payload, MBMF_TELEMETRY_SIZE, wire, sizeof wire);
    print_hex("telemetry", wire, n);
    mbmf_pack_config(&cfg, payload);
    n = mbmf_encode_frame(MBMF_CONFIG, 2, payload, MBMF_CONFIG_SIZE, wire, sizeof wire);
    print_hex("config", wire, n);
    mbmf_pack_config_ack(&ack, payload);
    n = mbmf_encode_frame(MBMF_CONFIG_ACK, 3, payload, MBMF_CONFIG_ACK_SIZE, wire, sizeof wire);
    print_hex("config_ack", wire, n);
    mbmf_pack_heartbeat(&hb, payload);
    n = mbmf_encode_frame(MBMF_HEARTBEAT, 256, payload, MBMF_HEARTBEAT_SIZE, wire, sizeof wire);
    print_hex("heartbeat", wire, n);
    return 0;
}

/* Re-encode a decoded frame from its fields: must give back exactly the bytes received. */
static size_t reencode(const mbmf_frame *f, uint8_t *wire)
{
    uint8_t payload[MBMF_MAX_PAYLOAD];
    size_t n = 0;
    switch (f->type) {
    case MBMF_MOTOR_COMMAND: { mbmf_motor_command m; mbmf_unpack_motor_command(f, &m); n = mbmf_pack_motor_command(&m, payload); break; }
    case MBMF_TELEMETRY: { mbmf_telemetry t; mbmf_unpack_telemetry(f, &t); n = mbmf_pack_telemetry(&t, payload); break; }
    case MBMF_CONFIG: { mbmf_config c; mbmf_unpack_config(f, &c); n = mbmf_pack_config(&c, payload); break; }
    case MBMF_CONFIG_ACK: { mbmf_config_ack a; mbmf_unpack_config_ack(f, &a); n = mbmf_pack_config_ack(&a, payload); break; }
    case MBMF_HEARTBEAT: { mbmf_heartbeat h; mbmf_unpack_heartbeat(f, &h); n = mbmf_pack_heartbeat(&h, payload); break; }
    default: return 0;
    }
    return mbmf_encode_frame(f->type, f->seq, payload, n, wire, MBMF_MAX_WIRE);
}

static void write_all(int fd, const uint8_t *p, size_t n)
{
    /* a UART with nobody listening loses bytes: so does this one when the pty buffer is full */
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w <= 0)
            return;
        p += w;
        n -= (size_t)w;
    }
}

int main(int argc, char **argv)
{
    mbmf_config defaults = {256, 0, 0, 100, 250};
    mbmf_device dev;
    mbmf_decoder check;
    mbmf_frame frame;
    uint8_t rx[256], raw[MBMF_MAX_WIRE + 1], wire[MBMF_MAX_WIRE], reply[MBMF_MAX_WIRE];
    size_t raw_len = 0;
    unsigned long agree = 0, disagree = 0;
    double seconds = 0;
    int master, slave;
    int32_t angle[2] = {0, 0}; /* crank angles in 1e-5 rad */
    uint32_t start, last_step;
    struct termios tio;

    if (argc > 1 && strcmp(argv[1], "--vectors") == 0)
        return vectors();
    if (argc > 1)
        seconds = atof(argv[1]);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    master = posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0 || grantpt(master) || unlockpt(master)) {
        perror("device_pty: posix_openpt");
        return 2;
    }
    /* raw line discipline on the terminal side, and keep it open so the pty never hangs up */
    slave = open(ptsname(master), O_RDWR | O_NOCTTY);
    if (slave < 0 || tcgetattr(slave, &tio)) {
        perror("device_pty: open slave");
        return 2;
    }
    cfmakeraw(&tio);
    tcsetattr(slave, TCSANOW, &tio);
    fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK);
    printf("%s\n", ptsname(master));
    fflush(stdout);

    mbmf_device_init(&dev, &defaults);
    mbmf_decoder_init(&check);
    start = last_step = now_us();
    while (!stop && (seconds <= 0 || (uint32_t)(now_us() - start) < (uint32_t)(seconds * 1e6))) {
        struct pollfd pfd = {master, POLLIN, 0};
        uint32_t now;
        if (poll(&pfd, 1, 1) > 0 && (pfd.revents & POLLIN)) {
            ssize_t got = read(master, rx, sizeof rx);
            ssize_t i;
            now = now_us();
            for (i = 0; i < got; ++i) {
                size_t r = mbmf_device_receive(&dev, rx[i], now, reply, sizeof reply);
                int c;
                if (r)
                    write_all(master, reply, r);
                if (raw_len < sizeof raw)
                    raw[raw_len++] = rx[i];
                c = mbmf_decoder_feed(&check, rx[i], &frame);
                if (c == 1) {
                    size_t n = reencode(&frame, wire);
                    if (n == raw_len && memcmp(wire, raw, n) == 0)
                        ++agree;
                    else
                        ++disagree;
                }
                if (rx[i] == 0)
                    raw_len = 0;
            }
        }
        now = now_us();
        mbmf_device_update(&dev, now);
        {   /* the simulated cranks: speed follows the setpoint at once */
            uint32_t dt = now - last_step;
            int32_t speed[2];
            int k;
            speed[0] = (int32_t)dev.setpoint_left * 3000 / 32767;  /* 0.01 rad/s */
            speed[1] = (int32_t)dev.setpoint_right * 3000 / 32767;
            for (k = 0; k < 2; ++k) {
                angle[k] += (int32_t)((int64_t)speed[k] * 1000 * (int64_t)dt / 1000000);
                angle[k] %= 628319;
                if (angle[k] < 0)
                    angle[k] += 628319;
            }
            last_step = now;
            if (mbmf_device_telemetry_due(&dev, now)) {
                mbmf_telemetry t;
                size_t n;
                memset(&t, 0, sizeof t);
                t.left_angle = (uint16_t)((int64_t)angle[0] * 65536 / 628319);
                t.right_angle = (uint16_t)((int64_t)angle[1] * 65536 / 628319);
                t.left_speed = (int16_t)speed[0];
                t.right_speed = (int16_t)speed[1];
                t.left_back_emf = (int16_t)(speed[0] / 2);
                t.right_back_emf = (int16_t)(speed[1] / 2);
                t.gyro[2] = (int16_t)((speed[1] - speed[0]) / 4);
                t.accel[2] = 981;
                t.battery_mv = 3900;
                n = mbmf_device_telemetry(&dev, &t, 0, now, wire, sizeof wire);
                write_all(master, wire, n);
            }
        }
    }
    printf("summary commands=%lu watchdog_stops=%lu rx_ok=%lu rx_corrupt=%lu agree=%lu disagree=%lu "
           "setpoint_left=%d setpoint_right=%d\n",
           (unsigned long)dev.commands, (unsigned long)dev.watchdog_stops, (unsigned long)dev.decoder.frames_ok,
           (unsigned long)dev.decoder.frames_corrupt, agree, disagree, dev.setpoint_left, dev.setpoint_right);
    fflush(stdout);
    close(slave);
    close(master);
    return 0;
}
