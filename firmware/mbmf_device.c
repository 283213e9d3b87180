/* Device side of the mbmf protocol (see mbmf_device.h). */
#include "mbmf_device.h"

static uint16_t clamp_u16(uint16_t v, uint16_t lo, uint16_t hi) { return v < lo ? lo : (v > hi ? hi : v); }
static int16_t clamp_setpoint(int16_t v)
{
    return v < -MBMF_SETPOINT_MAX ? (int16_t)-MBMF_SETPOINT_MAX : v; /* -32768 has no positive twin */
}

void mbmf_device_init(mbmf_device *dev, const mbmf_config *defaults)
{
    mbmf_decoder_init(&dev->decoder);
    dev->config = *defaults;
    dev->config.telemetry_rate_hz = clamp_u16(defaults->telemetry_rate_hz, MBMF_MIN_TELEMETRY_HZ,
                                              MBMF_MAX_TELEMETRY_HZ);
    dev->config.command_timeout_ms = clamp_u16(defaults->command_timeout_ms, MBMF_MIN_TIMEOUT_MS,
                                               MBMF_MAX_TIMEOUT_MS);
    dev->tx_seq = 0;
    dev->last_command_seq = 0;
    dev->last_command_us = 0;
    dev->last_telemetry_us = 0;
    dev->have_command = 0;
    dev->configured = 0;
    dev->rx_error = 0;
    dev->watchdog_stopped = 1; /* no command yet: the motors stay at zero */
    dev->setpoint_left = 0;
    dev->setpoint_right = 0;
    dev->watchdog_stops = 0;
    dev->commands = 0;
}

size_t mbmf_device_receive(mbmf_device *dev, uint8_t byte, uint32_t now_us, uint8_t *reply, size_t cap)
{
    mbmf_frame frame;
    uint8_t payload[MBMF_MAX_PAYLOAD];
    int got = mbmf_decoder_feed(&dev->decoder, byte, &frame);
    if (got < 0) {
        dev->rx_error = 1;
        return 0;
    }
    if (got == 0)
        return 0;
    switch (frame.type) {
    case MBMF_MOTOR_COMMAND: {
        mbmf_motor_command cmd;
        mbmf_unpack_motor_command(&frame, &cmd);
        dev->setpoint_left = clamp_setpoint(cmd.left);
        dev->setpoint_right = clamp_setpoint(cmd.right);
        dev->last_command_seq = frame.seq;
        dev->last_command_us = now_us;
        dev->have_command = 1;
        dev->watchdog_stopped = 0;
        ++dev->commands;
        return 0;
    }
    case MBMF_CONFIG: {
        mbmf_config_ack ack;
        mbmf_unpack_config(&frame, &ack.applied);
        ack.applied.telemetry_rate_hz = clamp_u16(ack.applied.telemetry_rate_hz, MBMF_MIN_TELEMETRY_HZ,
                                                  MBMF_MAX_TELEMETRY_HZ);
        ack.applied.command_timeout_ms = clamp_u16(ack.applied.command_timeout_ms, MBMF_MIN_TIMEOUT_MS,
                                                   MBMF_MAX_TIMEOUT_MS);
        dev->config = ack.applied;
        dev->configured = 1;
        ack.config_seq = frame.seq;
        mbmf_pack_config_ack(&ack, payload);
        return mbmf_encode_frame(MBMF_CONFIG_ACK, dev->tx_seq++, payload, MBMF_CONFIG_ACK_SIZE, reply, cap);
    }
    case MBMF_HEARTBEAT: {
        mbmf_heartbeat hb;
        mbmf_unpack_heartbeat(&frame, &hb);
        hb.device_time_us = now_us;
        mbmf_pack_heartbeat(&hb, payload);
        return mbmf_encode_frame(MBMF_HEARTBEAT, dev->tx_seq++, payload, MBMF_HEARTBEAT_SIZE, reply, cap);
    }
    default: /* a device->host type sent to the device: well-formed, nothing to do */
        return 0;
    }
}

void mbmf_device_update(mbmf_device *dev, uint32_t now_us)
{
    uint32_t timeout_us = (uint32_t)dev->config.command_timeout_ms * 1000u;
    /* unsigned difference: correct across the 71.6-minute wrap of the microsecond clock */
    if (dev->have_command && !dev->watchdog_stopped && (uint32_t)(now_us - dev->last_command_us) > timeout_us) {
        dev->setpoint_left = 0;
        dev->setpoint_right = 0;
        dev->watchdog_stopped = 1;
        ++dev->watchdog_stops;
    }
}

int mbmf_device_telemetry_due(const mbmf_device *dev, uint32_t now_us)
{
    uint32_t period_us = 1000000u / dev->config.telemetry_rate_hz;
    return (uint32_t)(now_us - dev->last_telemetry_us) >= period_us;
}

size_t mbmf_device_telemetry(mbmf_device *dev, mbmf_telemetry *t, uint8_t battery_low, uint32_t now_us,
                             uint8_t *out, size_t cap)
{
    uint8_t payload[MBMF_TELEMETRY_SIZE];
    size_t n;
    uint32_t period_us = 1000000u / dev->config.telemetry_rate_hz;
    t->device_time_us = now_us;
    t->last_command_seq = dev->last_command_seq;
    t->status = (uint8_t)((dev->watchdog_stopped ? MBMF_STATUS_WATCHDOG_STOPPED : 0u)
                          | (dev->configured ? MBMF_STATUS_CONFIGURED : 0u)
                          | (battery_low ? MBMF_STATUS_LOW_BATTERY : 0u)
                          | (dev->rx_error ? MBMF_STATUS_RX_ERROR : 0u));
    mbmf_pack_telemetry(t, payload);
    n = mbmf_encode_frame(MBMF_TELEMETRY, dev->tx_seq, payload, MBMF_TELEMETRY_SIZE, out, cap);
    if (n == 0)
        return 0;
    ++dev->tx_seq;
    dev->rx_error = 0;
    /* keep the schedule (no drift) unless the loop fell more than a period behind */
    if ((uint32_t)(now_us - dev->last_telemetry_us) < 2u * period_us)
        dev->last_telemetry_us += period_us;
    else
        dev->last_telemetry_us = now_us;
    return n;
}
