build-dev/obj/apid/prom_ql.o: apid/prom_ql.c apid/prom_ql.h \
 common/series.h common/strutil.h common/test.h common/xalloc.h
apid/prom_ql.h:
common/series.h:
common/strutil.h:
common/test.h:
common/xalloc.h:
