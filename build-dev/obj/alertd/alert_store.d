build-dev/obj/alertd/alert_store.o: alertd/alert_store.c \
 alertd/alert_store.h alertd/alert_engine.h alertd/alert_rule.h \
 common/schema.h common/clock.h common/log.h common/strutil.h \
 common/test.h common/xalloc.h
alertd/alert_store.h:
alertd/alert_engine.h:
alertd/alert_rule.h:
common/schema.h:
common/clock.h:
common/log.h:
common/strutil.h:
common/test.h:
common/xalloc.h:
