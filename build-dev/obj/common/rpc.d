build-dev/obj/common/rpc.o: common/rpc.c common/rpc.h common/log.h \
 common/mpjson.h common/msg.h common/schema.h common/test.h \
 common/xalloc.h
common/rpc.h:
common/log.h:
common/mpjson.h:
common/msg.h:
common/schema.h:
common/test.h:
common/xalloc.h:
