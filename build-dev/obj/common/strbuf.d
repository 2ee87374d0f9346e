build-dev/obj/common/strbuf.o: common/strbuf.c common/strbuf.h \
 common/test.h common/xalloc.h
common/strbuf.h:
common/test.h:
common/xalloc.h:
