build-dev/obj/common/keytab.o: common/keytab.c common/keytab.h \
 common/strutil.h common/test.h common/xalloc.h
common/keytab.h:
common/strutil.h:
common/test.h:
common/xalloc.h:
