build-dev/obj/aggd/agg_wal.o: aggd/agg_wal.c aggd/agg_wal.h common/crc.h \
 common/fsyncer.h common/log.h common/test.h common/xalloc.h
aggd/agg_wal.h:
common/crc.h:
common/fsyncer.h:
common/log.h:
common/test.h:
common/xalloc.h:
