build-dev/obj/aggd/agg_query.o: aggd/agg_query.c aggd/agg_query.h \
 aggd/agg_rollup.h aggd/agg_sketch.h aggd/agg_stats.h aggd/agg_store.h \
 common/series.h aggd/agg_interval.h common/clock.h common/rpc.h \
 common/strutil.h common/test.h common/xalloc.h
aggd/agg_query.h:
aggd/agg_rollup.h:
aggd/agg_sketch.h:
aggd/agg_stats.h:
aggd/agg_store.h:
common/series.h:
aggd/agg_interval.h:
common/clock.h:
common/rpc.h:
common/strutil.h:
common/test.h:
common/xalloc.h:
