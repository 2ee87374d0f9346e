/*
 * mqspool: the record format shared by the mosquitto plugin
 * (ingestd/plugin/spool_plugin.c, inside the broker) and ingestd, which
 * consumes what the plugin wrote. The broker appends each telemetry
 * PUBLISH here before it acknowledges the device, so a reading the device
 * saw acknowledged is on disk (in the page cache at once, surviving a
 * kill -9 of any process; on the platter after the next sync) before
 * anything else happens to it.
 *
 * Files: DIR/mq-NNNNNNNNNNNNNNNN.spool. Record, little-endian:
 *   u32 magic "MQS1", u32 length of topic + payload, u16 topic length,
 *   u8 qos, u8 reserved, u32 CRC-32C of topic + payload, i64 broker
 *   receive time in ms, then the topic bytes and the payload bytes.
 * A record cut short by a crash fails its length or CRC check; readers
 * stop there and, once the writer has moved to a newer file, skip it.
 */
#ifndef SP_MQSPOOL_H
#define SP_MQSPOOL_H

#define MQSPOOL_MAGIC 0x3153514du /* "MQS1" little-endian */
#define MQSPOOL_HDR 24
#define MQSPOOL_RECORD_MAX (16u << 20)
#define MQSPOOL_PREFIX "mq-"
#define MQSPOOL_SUFFIX ".spool"

#endif
