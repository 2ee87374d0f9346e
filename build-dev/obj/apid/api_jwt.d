build-dev/obj/apid/api_jwt.o: apid/api_jwt.c apid/api_jwt.h common/test.h \
 common/xalloc.h
apid/api_jwt.h:
common/test.h:
common/xalloc.h:
