build-dev/obj/common/msg.o: common/msg.c common/msg.h common/schema.h \
 common/clock.h common/keytab.h common/series.h common/strutil.h \
 common/test.h common/xalloc.h
common/msg.h:
common/schema.h:
common/clock.h:
common/keytab.h:
common/series.h:
common/strutil.h:
common/test.h:
common/xalloc.h:
