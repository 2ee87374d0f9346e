build-dev/obj/aggd/agg_sketch.o: aggd/agg_sketch.c aggd/agg_sketch.h \
 common/test.h common/xalloc.h
aggd/agg_sketch.h:
common/test.h:
common/xalloc.h:
