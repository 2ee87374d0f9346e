build-dev/obj/common/topic.o: common/topic.c common/topic.h \
 common/series.h common/test.h
common/topic.h:
common/series.h:
common/test.h:
