build-dev/obj/common/urlmask.o: common/urlmask.c common/urlmask.h \
 common/strbuf.h common/test.h common/xalloc.h
common/urlmask.h:
common/strbuf.h:
common/test.h:
common/xalloc.h:
