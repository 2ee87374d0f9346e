build-dev/obj/common/fsyncer.o: common/fsyncer.c common/fsyncer.h \
 common/test.h
common/fsyncer.h:
common/test.h:
