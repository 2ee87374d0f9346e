build-dev/obj/common/sig.o: common/sig.c common/sig.h common/test.h
common/sig.h:
common/test.h:
