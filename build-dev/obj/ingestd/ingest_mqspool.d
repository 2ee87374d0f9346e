build-dev/obj/ingestd/ingest_mqspool.o: ingestd/ingest_mqspool.c \
 ingestd/ingest_mqspool.h ingestd/ingest_mqtt.h ingestd/mqspool.h \
 common/crc.h common/log.h common/topic.h common/test.h common/xalloc.h
ingestd/ingest_mqspool.h:
ingestd/ingest_mqtt.h:
ingestd/mqspool.h:
common/crc.h:
common/log.h:
common/topic.h:
common/test.h:
common/xalloc.h:
