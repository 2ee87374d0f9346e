build-dev/obj/alertd/alert_file.o: alertd/alert_file.c \
 alertd/alert_file.h alertd/alert_channel.h alertd/alert_rule.h \
 common/log.h common/test.h common/xalloc.h
alertd/alert_file.h:
alertd/alert_channel.h:
alertd/alert_rule.h:
common/log.h:
common/test.h:
common/xalloc.h:
