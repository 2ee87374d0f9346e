build-dev/obj/aggd/agg_ckpt.o: aggd/agg_ckpt.c aggd/agg_ckpt.h \
 aggd/agg_confirm.h common/msg.h common/schema.h aggd/agg_store.h \
 aggd/agg_rollup.h aggd/agg_sketch.h aggd/agg_stats.h common/series.h \
 common/crc.h common/le.h common/log.h common/test.h common/xalloc.h
aggd/agg_ckpt.h:
aggd/agg_confirm.h:
common/msg.h:
common/schema.h:
aggd/agg_store.h:
aggd/agg_rollup.h:
aggd/agg_sketch.h:
aggd/agg_stats.h:
common/series.h:
common/crc.h:
common/le.h:
common/log.h:
common/test.h:
common/xalloc.h:
