build-dev/obj/aggd/agg_chunk.o: aggd/agg_chunk.c aggd/agg_chunk.h \
 common/test.h common/xalloc.h
aggd/agg_chunk.h:
common/test.h:
common/xalloc.h:
