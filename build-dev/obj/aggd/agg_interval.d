build-dev/obj/aggd/agg_interval.o: aggd/agg_interval.c \
 aggd/agg_interval.h aggd/agg_sketch.h aggd/agg_store.h aggd/agg_rollup.h \
 aggd/agg_stats.h common/series.h aggd/agg_query.h common/clock.h \
 common/mpjson.h common/rpc.h common/strbuf.h common/strutil.h \
 common/test.h common/xalloc.h
aggd/agg_interval.h:
aggd/agg_sketch.h:
aggd/agg_store.h:
aggd/agg_rollup.h:
aggd/agg_stats.h:
common/series.h:
aggd/agg_query.h:
common/clock.h:
common/mpjson.h:
common/rpc.h:
common/strbuf.h:
common/strutil.h:
common/test.h:
common/xalloc.h:
