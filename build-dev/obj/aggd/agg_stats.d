build-dev/obj/aggd/agg_stats.o: aggd/agg_stats.c aggd/agg_stats.h \
 common/strutil.h common/test.h common/xalloc.h
aggd/agg_stats.h:
common/strutil.h:
common/test.h:
common/xalloc.h:
