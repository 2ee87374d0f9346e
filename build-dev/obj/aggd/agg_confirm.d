build-dev/obj/aggd/agg_confirm.o: aggd/agg_confirm.c aggd/agg_confirm.h \
 common/msg.h common/schema.h common/test.h common/xalloc.h
aggd/agg_confirm.h:
common/msg.h:
common/schema.h:
common/test.h:
common/xalloc.h:
