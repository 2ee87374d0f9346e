build-dev/obj/apid/api_lanes.o: apid/api_lanes.c apid/api_lanes.h \
 aggd/agg_query.h aggd/agg_rollup.h aggd/agg_sketch.h aggd/agg_stats.h \
 aggd/agg_store.h common/series.h common/clock.h common/rpc.h \
 common/test.h common/xalloc.h
apid/api_lanes.h:
aggd/agg_query.h:
aggd/agg_rollup.h:
aggd/agg_sketch.h:
aggd/agg_stats.h:
aggd/agg_store.h:
common/series.h:
common/clock.h:
common/rpc.h:
common/test.h:
common/xalloc.h:
