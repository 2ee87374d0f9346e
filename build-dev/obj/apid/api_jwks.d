build-dev/obj/apid/api_jwks.o: apid/api_jwks.c apid/api_jwks.h \
 apid/api_jwt.h common/clock.h common/log.h common/strbuf.h common/test.h \
 common/urlmask.h common/xalloc.h
apid/api_jwks.h:
apid/api_jwt.h:
common/clock.h:
common/log.h:
common/strbuf.h:
common/test.h:
common/urlmask.h:
common/xalloc.h:
