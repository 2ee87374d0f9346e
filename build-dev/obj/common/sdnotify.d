build-dev/obj/common/sdnotify.o: common/sdnotify.c common/sdnotify.h \
 common/test.h
common/sdnotify.h:
common/test.h:
