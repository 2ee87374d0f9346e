build-dev/obj/ingestd/ingestd.o: ingestd/ingestd.c ingestd/ingestd.h \
 ingestd/ingest_mqspool.h ingestd/ingest_mqtt.h ingestd/ingest_parse.h \
 common/msg.h common/schema.h ingestd/ingest_quota.h \
 ingestd/ingest_spool.h common/apikey.h common/bucket.h common/clock.h \
 common/daemon.h common/cfg.h common/ep.h common/http.h common/log.h \
 common/mpjson.h common/ratelimit.h common/reload.h common/rpc.h \
 common/series.h common/strutil.h common/test.h common/topic.h \
 common/xalloc.h
ingestd/ingestd.h:
ingestd/ingest_mqspool.h:
ingestd/ingest_mqtt.h:
ingestd/ingest_parse.h:
common/msg.h:
common/schema.h:
ingestd/ingest_quota.h:
ingestd/ingest_spool.h:
common/apikey.h:
common/bucket.h:
common/clock.h:
common/daemon.h:
common/cfg.h:
common/ep.h:
common/http.h:
common/log.h:
common/mpjson.h:
common/ratelimit.h:
common/reload.h:
common/rpc.h:
common/series.h:
common/strutil.h:
common/test.h:
common/topic.h:
common/xalloc.h:
