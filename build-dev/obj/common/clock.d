build-dev/obj/common/clock.o: common/clock.c common/clock.h common/test.h
common/clock.h:
common/test.h:
