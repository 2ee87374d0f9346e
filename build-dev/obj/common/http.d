build-dev/obj/common/http.o: common/http.c common/http.h common/log.h \
 common/mpjson.h common/rpc.h common/test.h common/xalloc.h
common/http.h:
common/log.h:
common/mpjson.h:
common/rpc.h:
common/test.h:
common/xalloc.h:
