build-dev/obj/common/mpjson.o: common/mpjson.c common/mpjson.h \
 common/msg.h common/schema.h common/strbuf.h common/strutil.h \
 common/test.h common/xalloc.h
common/mpjson.h:
common/msg.h:
common/schema.h:
common/strbuf.h:
common/strutil.h:
common/test.h:
common/xalloc.h:
