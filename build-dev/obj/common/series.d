build-dev/obj/common/series.o: common/series.c common/series.h \
 common/strutil.h common/test.h
common/series.h:
common/strutil.h:
common/test.h:
