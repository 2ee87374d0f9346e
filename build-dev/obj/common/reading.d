build-dev/obj/common/reading.o: common/reading.c common/reading.h \
 common/clock.h common/series.h common/test.h
common/reading.h:
common/clock.h:
common/series.h:
common/test.h:
