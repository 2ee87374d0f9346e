build-dev/obj/apid/api_analytics.o: apid/api_analytics.c \
 apid/api_analytics.h apid/apid.h common/http.h common/clock.h \
 common/strutil.h common/test.h common/xalloc.h
apid/api_analytics.h:
apid/apid.h:
common/http.h:
common/clock.h:
common/strutil.h:
common/test.h:
common/xalloc.h:
