build-dev/obj/aggd/aggd.o: aggd/aggd.c aggd/aggd.h aggd/agg_ckpt.h \
 aggd/agg_confirm.h common/msg.h common/schema.h aggd/agg_store.h \
 aggd/agg_rollup.h aggd/agg_sketch.h aggd/agg_stats.h common/series.h \
 aggd/agg_query.h aggd/agg_wal.h aggd/agg_export.h common/clock.h \
 common/daemon.h common/cfg.h common/ep.h common/log.h common/ratelimit.h \
 common/outq.h common/reading.h common/reload.h common/rpc.h \
 common/mpjson.h common/strbuf.h common/test.h common/xalloc.h
aggd/aggd.h:
aggd/agg_ckpt.h:
aggd/agg_confirm.h:
common/msg.h:
common/schema.h:
aggd/agg_store.h:
aggd/agg_rollup.h:
aggd/agg_sketch.h:
aggd/agg_stats.h:
common/series.h:
aggd/agg_query.h:
aggd/agg_wal.h:
aggd/agg_export.h:
common/clock.h:
common/daemon.h:
common/cfg.h:
common/ep.h:
common/log.h:
common/ratelimit.h:
common/outq.h:
common/reading.h:
common/reload.h:
common/rpc.h:
common/mpjson.h:
common/strbuf.h:
common/test.h:
common/xalloc.h:
