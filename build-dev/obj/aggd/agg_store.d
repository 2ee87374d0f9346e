build-dev/obj/aggd/agg_store.o: aggd/agg_store.c aggd/agg_store.h \
 aggd/agg_rollup.h aggd/agg_sketch.h aggd/agg_stats.h common/series.h \
 aggd/agg_chunk.h common/crc.h common/le.h common/log.h common/test.h \
 common/xalloc.h
aggd/agg_store.h:
aggd/agg_rollup.h:
aggd/agg_sketch.h:
aggd/agg_stats.h:
common/series.h:
aggd/agg_chunk.h:
common/crc.h:
common/le.h:
common/log.h:
common/test.h:
common/xalloc.h:
