build-dev/obj/common/crc.o: common/crc.c common/crc.h common/test.h
common/crc.h:
common/test.h:
