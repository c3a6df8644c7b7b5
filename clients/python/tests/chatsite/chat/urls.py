from django.urls import path

from . import views

urlpatterns = [
    path("", views.index, name="index"),
    path("<str:room_name>/", views.room, name="room"),
    path("<str:room_name>/messages/", views.send_message, name="send_message"),
    path("<str:room_name>/close/", views.close_room, name="close_room"),
]
