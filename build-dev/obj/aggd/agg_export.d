build-dev/obj/aggd/agg_export.o: aggd/agg_export.c aggd/agg_export.h \
 aggd/agg_wal.h common/clock.h common/log.h common/msg.h common/schema.h \
 common/ratelimit.h common/series.h common/strbuf.h common/strutil.h \
 common/test.h common/urlmask.h common/xalloc.h
aggd/agg_export.h:
aggd/agg_wal.h:
common/clock.h:
common/log.h:
common/msg.h:
common/schema.h:
common/ratelimit.h:
common/series.h:
common/strbuf.h:
common/strutil.h:
common/test.h:
common/urlmask.h:
common/xalloc.h:
