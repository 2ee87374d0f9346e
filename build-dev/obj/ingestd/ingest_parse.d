build-dev/obj/ingestd/ingest_parse.o: ingestd/ingest_parse.c \
 ingestd/ingest_parse.h common/msg.h common/schema.h ingestd/ingest_lp.h \
 common/clock.h common/mpjson.h common/reading.h common/rpc.h \
 common/series.h common/strutil.h common/test.h common/xalloc.h
ingestd/ingest_parse.h:
common/msg.h:
common/schema.h:
ingestd/ingest_lp.h:
common/clock.h:
common/mpjson.h:
common/reading.h:
common/rpc.h:
common/series.h:
common/strutil.h:
common/test.h:
common/xalloc.h:
