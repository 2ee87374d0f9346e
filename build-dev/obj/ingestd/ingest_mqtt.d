build-dev/obj/ingestd/ingest_mqtt.o: ingestd/ingest_mqtt.c \
 ingestd/ingest_mqtt.h common/log.h common/ratelimit.h common/topic.h \
 common/xalloc.h
ingestd/ingest_mqtt.h:
common/log.h:
common/ratelimit.h:
common/topic.h:
common/xalloc.h:
