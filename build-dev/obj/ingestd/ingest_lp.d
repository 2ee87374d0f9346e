build-dev/obj/ingestd/ingest_lp.o: ingestd/ingest_lp.c \
 ingestd/ingest_lp.h common/msg.h common/schema.h ingestd/ingest_parse.h \
 common/clock.h common/keytab.h common/reading.h common/series.h \
 common/strutil.h common/test.h common/xalloc.h
ingestd/ingest_lp.h:
common/msg.h:
common/schema.h:
ingestd/ingest_parse.h:
common/clock.h:
common/keytab.h:
common/reading.h:
common/series.h:
common/strutil.h:
common/test.h:
common/xalloc.h:
