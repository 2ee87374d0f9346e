build-dev/obj/aggd/agg_rollup.o: aggd/agg_rollup.c aggd/agg_rollup.h \
 aggd/agg_sketch.h aggd/agg_stats.h common/le.h common/test.h \
 common/xalloc.h
aggd/agg_rollup.h:
aggd/agg_sketch.h:
aggd/agg_stats.h:
common/le.h:
common/test.h:
common/xalloc.h:
