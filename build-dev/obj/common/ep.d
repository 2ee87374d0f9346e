build-dev/obj/common/ep.o: common/ep.c common/ep.h common/log.h \
 common/test.h
common/ep.h:
common/log.h:
common/test.h:
