build-dev/obj/ingestd/ingest_quota.o: ingestd/ingest_quota.c \
 ingestd/ingest_quota.h common/msg.h common/schema.h common/bucket.h \
 common/clock.h common/log.h common/quota.h common/test.h common/xalloc.h
ingestd/ingest_quota.h:
common/msg.h:
common/schema.h:
common/bucket.h:
common/clock.h:
common/log.h:
common/quota.h:
common/test.h:
common/xalloc.h:
