// An Arduino-style sketch for a two-motor board speaking the mbmf protocol (docs/protocol.md) at 57600 baud,
// e.g. an XBee on Serial1. Copy ../../mbmf_protocol.{h,c} and ../../mbmf_device.{h,c} next to this file.
// Fill in the four hardware functions for your board: PWM out, encoder angles, IMU, battery.
// No heap, no floats in the protocol path; the crank-speed PID here uses integers (gains in Q8.8).
extern "C" {
#include "mbmf_device.h"
}

static const mbmf_config DEFAULTS = {256, 16, 0, 100, 250};  // kp 1.0, ki 1/16, kd 0, 100 Hz, 250 ms
static mbmf_device dev;
static uint8_t out[MBMF_MAX_WIRE];

// --- board-specific parts --------------------------------------------------------------------------------
static const int PWM_LEFT = 5, DIR_LEFT = 4, PWM_RIGHT = 6, DIR_RIGHT = 7;
static void motor_pwm(int pwm_pin, int dir_pin, int32_t duty /* -255..255 */)
{
    digitalWrite(dir_pin, duty >= 0 ? HIGH : LOW);
    analogWrite(pwm_pin, (int)(duty >= 0 ? duty : -duty));
}
static uint16_t read_crank_angle(int side) { (void)side; return 0; }  // magnetic encoder: angle * 65536 / 2 pi
static void read_imu(int16_t gyro[3], int16_t accel[3])               // 0.001 rad/s and 0.01 m/s^2 counts
{
    gyro[0] = gyro[1] = gyro[2] = 0;
    accel[0] = accel[1] = 0;
    accel[2] = 981;
}
static uint16_t read_battery_mv(void) { return (uint16_t)((uint32_t)analogRead(A0) * 5000u * 2u / 1023u); }

// --- crank speed from encoder differences, integer PID ----------------------------------------------------
static const int32_t FULL_SPEED = 3000;  // 0.01 rad/s counts at setpoint 32767 (30 rad/s)
static uint16_t last_angle[2];
static uint32_t last_speed_us;
static int16_t speed[2];
static int32_t integral[2], last_error[2];

static void update_speed(uint32_t now)
{
    uint32_t dt = now - last_speed_us;
    int side;
    if (dt < 2000u)
        return;
    for (side = 0; side < 2; ++side) {
        uint16_t a = read_crank_angle(side);
        int16_t diff = (int16_t)(uint16_t)(a - last_angle[side]);  // wraps correctly within half a turn
        // counts per dt -> 0.01 rad/s: diff * (2 pi / 65536) / dt * 1e6 * 100
        speed[side] = (int16_t)((int32_t)diff * 958738 / (int32_t)dt);
        last_angle[side] = a;
    }
    last_speed_us = now;
}

static int32_t pid(int side, int16_t setpoint)
{
    int32_t target = (int32_t)setpoint * FULL_SPEED / MBMF_SETPOINT_MAX;
    int32_t error = target - speed[side];
    int32_t u;
    if (setpoint == 0) {  // stopped: no integral wind-up, motors off
        integral[side] = 0;
        return 0;
    }
    integral[side] += error;
    if (integral[side] > 100000) integral[side] = 100000;
    if (integral[side] < -100000) integral[side] = -100000;
    u = ((int32_t)dev.config.kp * error + (int32_t)dev.config.ki * integral[side] / 64
         + (int32_t)dev.config.kd * (error - last_error[side])) / 256 / 12;  // 0.01 rad/s -> duty counts
    last_error[side] = error;
    return u > 255 ? 255 : (u < -255 ? -255 : u);
}

void setup()
{
    pinMode(DIR_LEFT, OUTPUT);
    pinMode(DIR_RIGHT, OUTPUT);
    motor_pwm(PWM_LEFT, DIR_LEFT, 0);
    motor_pwm(PWM_RIGHT, DIR_RIGHT, 0);
    Serial1.begin(57600);
    mbmf_device_init(&dev, &DEFAULTS);
}

void loop()
{
    uint32_t now = micros();
    while (Serial1.available() > 0) {
        size_t n = mbmf_device_receive(&dev, (uint8_t)Serial1.read(), now, out, sizeof out);
        if (n)
            Serial1.write(out, n);  // heartbeat echo or config ack
    }
    mbmf_device_update(&dev, now);  // the watchdog: setpoints to zero when commands stop
    update_speed(now);
    motor_pwm(PWM_LEFT, DIR_LEFT, pid(0, dev.setpoint_left));
    motor_pwm(PWM_RIGHT, DIR_RIGHT, pid(1, dev.setpoint_right));
    if (mbmf_device_telemetry_due(&dev, now)) {
        mbmf_telemetry t;
        uint16_t battery = read_battery_mv();
        t.left_angle = read_crank_angle(0);
        t.right_angle = read_crank_angle(1);
        t.left_speed = speed[0];
        t.right_speed = speed[1];
        t.left_back_emf = 0;  // sample the motor terminals during the PWM off-time if the board can
        t.right_back_emf = 0;
        read_imu(t.gyro, t.accel);
        t.battery_mv = battery;
        size_t n = mbmf_device_telemetry(&dev, &t, battery < 3500u, now, out, sizeof out);
        Serial1.write(out, n);
    }
}
