build-dev/obj/alertd/alert_sink_webhook.o: alertd/alert_sink_webhook.c \
 alertd/alert_sink_webhook.h alertd/alert_channel.h alertd/alert_rule.h \
 common/clock.h common/test.h common/urlmask.h common/xalloc.h
alertd/alert_sink_webhook.h:
alertd/alert_channel.h:
alertd/alert_rule.h:
common/clock.h:
common/test.h:
common/urlmask.h:
common/xalloc.h:
