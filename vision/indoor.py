"""The held-back indoor set (issue 16), and the training split's indoor rooms.

Lists of file names, chosen by looking at every photo (2026-12-05), so that the
set is fixed in the repository without copying any image. Every list but
``TRAIN_INDOOR`` lies in the held-back split of vision/data.py's split scheme
"v2" (the images the shipped model of 2026-11-29 never trained on: its
validation and test splits, plus the few lit fireplaces and candle tables
taken out of its training pool, see ``data.MOVED_TO_HELD_BACK``). Nothing here
is trained on or used to choose an epoch or a threshold.

Groups:

* ``ORDINARY_INDOOR``: cair-fire-images normal_images, ordinary indoor scenes
  (offices, bedrooms, hotel rooms, living rooms, meeting rooms, halls, shops,
  an airport hall; bright white rooms among them, and red rooms and lamps).
  Negative for fire and smoke.
* ``CONTROLLED_FLAMES``: lit fireplaces, candle tables, a charcoal grill and a
  log torch ((folder, name): two of them are labelled fire by the dataset).
  Reported as their own group: neither fire recall nor ordinary scenes. A
  camera keeps them quiet by size and growth over its hold (vision/scene.py
  and the camera's steady rules), not by the single-frame score.
* ``INDOOR_FIRE_PHOTOS``: cair-fire-images fire_images showing a fire inside a
  room.
* ``INDOOR_CCTV_GROUPS``: held-back CCTV clips / frame blocks filmed indoors
  (their frames keep the dataset's box labels: fire, smoke, or neither).
* ``OUTDOOR_CCTV_GROUPS``: the other held-back CCTV groups (for completeness).
* ``TRAIN_INDOOR``: indoor rooms of v2's training pool (its train and val
  splits) of normal_images, the backgrounds of composite training images
  (vision/composite.py; only those a scheme puts in "train" are used).

Split scheme "v3" (2026-12-06, vision/data.py) holds back a *fresh* indoor set
out of v2's training pool, because the set above has been looked at (two
candidates were scored on it). Chosen by file name and by looking at the
pictures, never by a model's score:

* ordinary rooms: ``TRAIN_INDOOR`` split three ways by a salted hash of the
  name (``v3_room_part``): about 35 % held back, 30 % validation (enough rooms
  to place a 2 % operating point), 35 % training;
* ``POOL_INDOOR_FIRE_PHOTOS``: the fire_images of v2's training pool that show a
  fire inside a room (26, by eye), half of them held back by a salted hash
  (``v3_fire_photo_held``);
* ``FRESH_INDOOR_CCTV_GROUPS``: whole indoor CCTV clips of v2's training pool
  with fire (a burning room, an office, a shop, a lobby), held back whole. The
  car-park camera clips (fire2_mp4, img_block13) stay in training: their
  sibling fire1_mp4 is in the old held-back set; img_block4 stays (too dark to
  tell indoor from outdoor).
"""

from __future__ import annotations

import hashlib

# normal_images, ordinary indoor scenes (held back)
ORDINARY_INDOOR = frozenset(
    {
        "080502-AirportsHong Kong.grid-6x2.jpg",
        "1010212.jpg",
        "1104525.jpg",
        "111052980.jpg",
        "12.jpg",
        "2-HootSuite-blog-0534.jpg",
        "289259543-business-meeting-salle-de-conference-discuter-debattre-collegues.jpg",
        "3631119830_7be2edf6aa_z.jpg",
        "36701_133427340015458_133421316682727_259449_2221369_n.jpg",
        "4.jpg",
        "49-Great-Room-Design3.jpg",
        "500_F_128074665_71JRncSY29Pdumr6kt8sPLYvByWxeWXc.jpg",
        "8f4eaec213662be924ae9e7a99d20b11.jpg",
        "906a126cd675836e17f24837ff7ade1b.jpg",
        "952111662014LEUDLAV.jpg.jpg",
        "AdvisoryCouncilMeeting477x318.jpg",
        "Don-Mueang-International-Airport.jpg",
        "En-Route-Stuck-with-a-Cancelled-Flight-in-Hong-Kong-International-Airport-9426.jpg",
        "G044.jpg",
        "Grand-Deluxe-Room-King-Bed-Big32201584154.jpg",
        "Great+Room.jpg",
        "Haikou Mingguang hotel_deluxe room.jpg",
        "Lappis_gkok-1024x681.jpg",
        "Le-Meridien-Piccadilly--Classic-Room.jpg",
        "Liberia-terminal_newsfull_h.jpg",
        "London-Office--tojpeg_1431338424080_x2.jpg",
        "New Picture (26).jpg",
        "Parish-Council-Annual-Meeting-2012.jpg",
        "Perfect-Red-And-Gold-Rooms-45-With-Additional-with-Red-And-Gold-Rooms.jpg",
        "Picture-014.jpg",
        "Sprint_Image_960x5281-900x495.jpg",
        "W020160510630506554070.jpg",
        "a-golden-bedroom-with-a-feng-shui-glow.jpg",
        "arnold-living-room-0515.jpg",
        "bn-0.jpg",
        "c77e354d46f7e8cc7babe8fdf8f93c76.jpg",
        "cdnassets.hw.net.jpg",
        "cglb-deluxe.jpg",
        "conference-room2.jpg",
        "da97b0fd08647c127e2912608c6bf9b7.jpg",
        "dark-red-living-room.jpg",
        "deluxe-room-02.jpg",
        "european-room-denver-2.jpg",
        "f16-small-meeting-roompost.jpg",
        "f301e43bcd7a738afc1f7926ced876da.jpg",
        "four-rooms.jpg",
        "gallery-1428596092-home-sweet-home-living-room-0515.jpg",
        "khon_kaen_photo_36.jpg",
        "large_mpceb_DeluxeTwinRoom.jpg",
        "lister_schaffer.jpg",
        "meda_bia_class_0.jpg",
        "mps-conv-store-model2.jpg",
        "n36036_living_01.jpg",
        "o-BRIGHT-LIGHTING-ROOM-LAMP-facebook.jpg",
        "office-cctv-cameras-400x2661.jpg",
        "pic_The-conference-room-Sits-up-to-35-people_577093_large.jpg",
        "polycom-conference-room-1.jpg",
        "potd01083110.jpg",
        "red_room_sml.jpg",
        "room.jpg",
        "simply-rooms-suites.jpg",
        "tip-2-img-1.jpg",
        "tumblr_inline_nj85l1oMaC1t5js1c.jpg",
        "unnamed.jpg",
        "virgo-penn-station-new-yorker-room-800.jpg",
    }
)

# (folder, name): lit fireplaces, candles, a grill, a log torch (held back)
CONTROLLED_FLAMES = frozenset(
    {
        ("fire_images", "burning-charcoal-briquettes-closeup-14552988.jpg"),
        ("fire_images", "d00cc0fe53897ff01f30eba713ac8ef0.jpg"),
        ("normal_images", "241996-2560x1920.jpg.600x350_q85_crop.jpg"),
        ("normal_images", "4d97215bd7b0c4672f62c62cebaf38c7.jpg"),
        (
            "normal_images",
            "JB224_03_Colourful_christmas_table_setting_in_red_and_gold_with_roses_and_candlelight_and_christmas_tree.jpg",
        ),
        ("normal_images", "ce17da98fd0525cbe7ea1816b90fe4d9.jpg"),
        ("normal_images", "fire-featured.jpg"),
        ("normal_images", "white-and-orange-living-and-dining-room.jpg"),
        ("normal_images", "x14862823.jpg"),
    }
)

# fire_images, fires inside rooms (held back)
INDOOR_FIRE_PHOTOS = frozenset(
    {
        "132-img1.jpg",
        "22eqf.jpg",
        "2CDDD98D00000578-3246257-image-a-30_1443454943645.jpg",
        "X-Files_Office_on_fire.jpg",
        "article-urn publicid ap.org d8f7d3843cf1498b9ca96b1195c90427-3Y8qqBnFtobb1933fd918ac4b382-364_634x422.jpg",
        "house_fire.jpg",
        "hqdefaultsdfsdf.jpg",
        "kjlkmnjkl;'.jpg",
        "maxresdefault.jpg",
        "mfs_fire_investigation_image_bedroom_with_candles_2.jpg",
        "telugu-desam-office-fire_0.jpg",
    }
)

# held-back CCTV groups (vision.data.cctv_group) filmed indoors: a flat, a kitchen,
# shops with security fog, rooms with smoke at a window
INDOOR_CCTV_GROUPS = frozenset(
    {
        "fire1_mp4",
        "img_block2",
        "img_block28",
        "img_block29",
        "img_block30",
        "img_block37",
        "img_block82",
        "smoke1_mp4",
        "smoke2_mp4",
        "test1_mp4",
    }
)
# held-back CCTV groups filmed outdoors: a car fire in a street, news, a highway, a plume
OUTDOOR_CCTV_GROUPS = frozenset(
    {"img_block14", "img_block15", "img_block18", "img_block24", "pexels-alan-w-8365989_mp4"}
)

# normal_images of the training split showing a room (composite backgrounds)
TRAIN_INDOOR = frozenset(
    {
        "0.07180100_1442390923_.jpg",
        "02-icehouse-louisiana-coworking-office.jpg",
        "041212_BIZ_Hook_Logic_MRM_03_display.jpg",
        "08-Great Room.jpg",
        "080417_4706.jpg",
        "0921231903.jpg",
        "0bfdc7cd49e09851cc7063ffaf20bf3a.jpg",
        "1.jpg",
        "1200_ded3cdcfdca66b2fc57ee8d9bbc6c827.jpg",
        "13180942_585627594925764_312096060_n.jpg",
        "14.jpg",
        "142094477.jpg",
        "156ddbd4bb2536343afe883a9ad11b5d.jpg",
        "157_TypicalOffice-1024x881.jpg",
        "158.jpg",
        "1ea2139c58e480cf9d31d8412aafc2e3.jpg",
        "1f5cc65c_original.jpg",
        "2014-01-21-RTKLLONDON.jpg",
        "20150930-Einzelzimmer.jpg",
        "20160711044639758.jpg",
        "20bd07c102708fc2c1357735894fdac0.jpg",
        "24551b883de1686d35e953d43312dedf.jpg",
        "264929c131741c20f3a5e306a6c8b67d.jpg",
        "2879429718_f6a88de41d_b.jpg",
        "29a74da6d3a8a4577a43d76b519128c1.jpg",
        "3028310B00000578-3398915-image-a-2_1452764691811.jpg",
        "3344142642_c4d3bfa042_b.jpg",
        "366176-office.jpg",
        "3q4.jpg",
        "4205c7bf872ff65b5569a54616e7fc4b.jpg",
        "4551643-interior-of-the-modern-conference-hall.jpg",
        "45a4925c6329b15ac6184c868b78db14.jpg",
        "45d893bb4a9e15e3ea7aab81ec783e7c.jpg",
        "4c753813768b747811d11ffdd5dcebb5.jpg",
        "54ff8227d6954-living-room-gold-orange-xln.jpg",
        "5983c29594905fdd0be9d691c036c90b0603f68d.jpg",
        "6587c2f0d1e9e056c1f18e65b3fbe7b5.jpg",
        "65a10dc9e3ca143b6b8649191b81f665.wix_mp_1024.jpg",
        "65c288db48faa04662a56deb59a8db1c.jpg",
        "76e108150890ac29_6362-w500-h400-b0-p0--traditional-family-room.jpg",
        "7875419_4_z.jpg",
        "7bfa705a0e9058e8e33494bbe76a330c.jpg",
        "813e6b10-848b-478e-a471-480f14eeb271.1.10.jpg",
        "8471644323_90981b7693.jpg",
        "9129708.jpg",
        "9544.jpg",
        "AAEAAQAAAAAAAAJqAAAAJDAwNDUwNDAwLWUwYTAtNDlmNy1iNjk4LTY2NDk1NzFjMDI3OQ.jpg",
        "AAEAAQAAAAAAAAKvAAAAJDY3MzVhYTUwLTY2ODktNDY5NC1hYWZjLWE4MjZmYmY0NzU1ZA.jpg",
        "AAEAAQAAAAAAAAjsAAAAJGFlM2QxZTU2LTJjNTEtNGY5OC04OWFhLTgwODA3OTBiN2ZkNA.jpg",
        "Adamsafter.jpg",
        "Athens-International-Airport.jpg",
        "Beautiful-Morrocan-style-for-bedroom-design-2-530x424.jpg",
        "Bold-Red-Colors-Decoration-in-Modern-Teen-Bedrooms.jpg",
        "Business-Meeting-Etiquette.jpg",
        "C201409001_C1.jpg",
        "CCTV-in-supermarket.jpg",
        "Carson-City-Retail-Interior-Design1.jpg",
        "Conference_Room_CHENG_Ze.jpg",
        "CreativeOffice_3_LgLand.jpg",
        "DSCN1146-600x350.jpg",
        "DT_meeting2_53_677x380_FitToBoxSmallDimension_Center.jpg",
        "ES_execconfroom_6_712x342_FitToBoxSmallDimension_Center.jpg",
        "Elagant-Office-Meeting-Room-Design.jpg",
        "Farah-Conference-Room.jpg",
        "Feng-Shui-your-Bedroom-98135424-web.jpg",
        "Gift_Shop_52.jpg",
        "Glamorous-Living-Room-Decor-Ideas-with-Crystalist-Chandelier-Lightings-Furnished-with-White-Sofa-and-Chair-plus-White-Table-and-Round-Ottoman-on-Thick-Rug.jpg",
        "HX_meetingroom_9_425x303_FitToBoxSmallDimension_Center.jpg",
        "Hero_2007Upsell_1920x560.jpg",
        "Hero_O365ForBusiness_1920x560.jpg",
        "IMG_0285.jpg",
        "Input-Group-King's-Cross-St-Pancras-Travel-CCTV-Back-Office.jpg",
        "Interior Design Ideas (3).jpg",
        "JEs238e.jpg",
        "Le-Meridien-Piccadilly--Club-Room.jpg",
        "Light-wood-white-interior.jpg",
        "LimeLightsDallas.812.jpg",
        "Meeting room with people.jpg",
        "Meeting room with people2.jpg",
        "Multipurpose-home-office-design-with-unique-table-and-quartz-countertop.jpg",
        "Narita_International_Airport_Terminal_2_counters_(1).jpg",
        "New-York-Automobile-Show.jpg",
        "Office-Space-Photo-Open-Design.jpg",
        "Office.jpg",
        "Office_of_the_Wikimedia_Foundation.jpg",
        "Open-plan-office-2.jpg",
        "PJ-BE591_WORKFA_G_20120103214537.jpg",
        "Pangu-7-Star-Hotel-Beijing-Chambre-Executive.jpg",
        "Problem-smoke-bedroom.jpg",
        "Public-Office.jpg",
        "QzOffice-750x400-c-default.jpg",
        "RMS_Red-living-room_Creynolds_s4x3.jpg.rend.hgtvcom.616.462.jpg",
        "Rent room stockholm.jpg",
        "SlackOffice1-640x427.jpg",
        "Small_World_Social_Teamwork.jpg",
        "Standard-single-1600x900.jpg",
        "Supermarket_z_flagami_(ubt).jpg",
        "Vardasen-House-13-850x1190.jpg",
        "Warm-Bedroom-Design-590x420.jpg",
        "a-fairly-typical-open-office.jpg",
        "a5f17e0b3dd5ed56bf5744f600b5c28b.jpg",
        "amazing-modern-living-room-design-with-white-brown-walls.jpg",
        "article-0-15CB7791000005DC-25_634x497.jpg",
        "atlantis-092712-328_1.jpg",
        "b3ba28f17af4917649fe0c08bc523922.jpg",
        "ballroom2.jpg",
        "bangkok-airport3.jpg",
        "bce8306b7c28fd808d52e831260b194b.jpg",
        "best_western_mornington_hotel_london.jpg",
        "black-and-beige-room.jpg",
        "board-room.jpg",
        "boardroom.jpg",
        "canvas-press_custom-wallpaper_conference_room.jpg",
        "case_study_large_image_182_large.jpg",
        "choosing-right-cctv-for-office.jpg",
        "contemporary-family-room.jpg",
        "cool-home-office-ideas-and-get-inspired-to-redecorate-your-Home-Office-with-these-decorative-Home-Office-ideas-1.jpg",
        "cph_virt2.jpg",
        "crowne-plaza-rome-4393591168-4x3.jpg",
        "deluxe-room-01.jpg",
        "deluxe-room-03.jpg",
        "dizain-na-osvetlenieto4.jpg",
        "e3d93d96e76e00a0c1df99a94f33c921.jpg",
        "eclectic-living-room.jpg",
        "efe.jpg",
        "european-room-denver-3.jpg",
        "f90f62c721068418828c0d99b5d892d0.jpg",
        "fireplace-with-no-fire.jpg",
        "gty_employees_working_office_jt_121218_wb.jpg",
        "gty_open_plan_office_ll_130701_33x16_1600.jpg",
        "home-image-small.jpg",
        "hotel-continental-marienbad-room-standard-10.jpg",
        "iStock_000020716385Large-1024x683.jpg",
        "idol_line_art.jpg",
        "image.aspx.jpg",
        "images34.jpg",
        "img31.jpg",
        "img_0465.jpg",
        "index.jpg",
        "interior-design-living-room-unique-with-images-of-interior-design-exterior-in-ideas.jpg",
        "irodaikomfort.jpg",
        "la-airport-1024x758.jpg",
        "large-meeting-room.jpg",
        "lighting-in-interior-design-interior-home-lighting-lovely-for-your-interior-design-of-bedrooms-ideas.jpg",
        "living-room-astounding-living-room-design-with-l-shaped-sofa-and-white-table-on-the-orange-rug-and-dark-floor-complete-with-brown-wicker-egg-chairs-also-fireplace-living-room-makeovers-ideas-936x701.jpg",
        "living-room-european-appartment.jpg",
        "living-room-large-big-interior-design-2.jpg",
        "llanelli-fire-red-room.jpg",
        "maxresdefaultvfv.jpg",
        "meeting.jpg",
        "meetings.jpg",
        "messy-office-space.jpg",
        "modern-living-room-with-TV-Neopolis.jpg",
        "n36036_kitchen_01.jpg",
        "neath_port_talbot_conference_meeting_v_Neath_Port_Talbot_Conference_Meeting_Rooms_.jpg",
        "normal-home-living-room-denbesten-real-estate-bloomington-rooms-1602-bensington-master-bedroom.jpg",
        "normal-room-with-private.jpg",
        "office-05.jpg",
        "office-9.jpg",
        "office-conference-room-design-ideas_354725.jpg",
        "office-googlereuse.jpg",
        "office_environment-googlereuse.jpg",
        "officedsdg.jpg",
        "open-offices.jpg",
        "open-plan-office-with-people.jpg",
        "p9200593.jpg",
        "phuket-bus-station.jpg",
        "plates-on-wall-cottage-living-room.jpg",
        "plot-projects-overview-big_image_url-1403254458.jpg",
        "romantic-bedrooms-bedrooms-and-red-color-schemes-on-pinterest-classic-bedroom-colors-red-768x511.jpg",
        "room-004.jpg",
        "room1212.jpg",
        "room6_450_reload.jpg",
        "room_image3324.jpg",
        "rooms-hotel-tbilisi-suite-bed-and-bathtub-city-view-a-01-x2.jpg",
        "rooms-image-small.jpg",
        "rs600x0deluxeoceanfrontviewroom.jpg",
        "salle-de-bains-amenagement-69157893.jpg",
        "seminar-05.jpg",
        "small-conference1.jpg",
        "small-room-medium.jpg",
        "smart-pillowcase-sofas-completee-living-room-witn-minimalist-charity.jpg",
        "success_78_pic_02.jpg",
        "supermarket-1200x800-1024x682.jpg",
        "theoffice3.jpg",
        "thumbnail.jpg",
        "ttthumb-505x200.jpg",
        "typical-desk-setup.jpg",
        "typical-office-layout.jpg",
        "up5.jpg",
        "virgo-esb-liberty-meeting-room-800.jpg",
        "virgo-grand-central-meeting-room-800.jpg",
        "visionneuse7.jpg",
        "warm-tech-living-room.jpg",
        "working-in-office.jpg",
        "xsylvia-hotel-queen-room.jpg.pagespeed.ic.hw9Tgtz7QM.jpg",
        "y5IQiH.jpg",
    }
)


# fire_images of v2's training pool showing a fire inside a room (by eye, 2026-12-06):
# half are held back by split scheme v3 (``v3_fire_photo_held``), half stay in training
POOL_INDOOR_FIRE_PHOTOS = frozenset(
    {
        "10-9-15-2-400.jpg",
        "11_10_19-mjs_ft_hotel-fire_19183862.jpg",
        "1d797f4e7f3a3ba45ac26472b19afa0e.jpg",
        "201307-restroom-fire-safety-fire1.jpg",
        "32313rwev.jpg",
        "4174776173_e8c26989cc_z.jpg",
        "913_0.jpg",
        "92983122.jpg",
        "Bedroom-fire-test-2-mins-1024x553.jpg",
        "Christmas-Tree-Fire-Safety.jpg",
        "FIR_LKC_ART_01_Detectingfire_bedroomfire.jpg",
        "Fire-in-a-room.jpg",
        "How-to-Set-a-Living-Room-on-Fire-with-VFX-in-4K.Still002.jpg",
        "Living_Room_Camp_Fire.jpg",
        "christmas_tree_fire.jpg",
        "f53d6194d2a38227e8ccbf91b42656c8.jpg",
        "girl-on-fire-01.jpg",
        "hqdefault.jpg",
        "image1609390x.jpg",
        "images.jpg",
        "incendie-noel.jpg",
        "office-fire_650_022415022412.jpg",
        "pic1.jpg",
        "room-fire.jpg",
        "tree-fire.jpg",
        "your-room1.jpg",
    }
)

# indoor CCTV clips with fire in v2's training pool, held back whole by scheme v3:
# a burning room (img_block3), an office (img_block9), a shop (img_block31), a lobby
# (test2_mp4, v2's validation fire clip)
FRESH_INDOOR_CCTV_GROUPS = frozenset({"img_block3", "img_block9", "img_block31", "test2_mp4"})

V3_HELD_ROOMS = 0.35  # share of TRAIN_INDOOR held back by v3
V3_VAL_ROOMS = 0.30  # share of TRAIN_INDOOR in v3's validation


def _salted(key: str) -> float:
    return int(hashlib.sha1(f"v3:{key}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF


def v3_room_part(name: str) -> str:
    """Where split scheme v3 puts a room of ``TRAIN_INDOOR``: "test", "val" or "train"."""
    h = _salted(f"cair/normal_images/{name}")
    return "test" if h < V3_HELD_ROOMS else "val" if h < V3_HELD_ROOMS + V3_VAL_ROOMS else "train"


def v3_fire_photo_held(name: str) -> bool:
    """Whether split scheme v3 holds back a photo of ``POOL_INDOOR_FIRE_PHOTOS``."""
    return _salted(f"cair/fire_images/{name}") < 0.5


# the fresh held-back indoor set of split scheme v3 (derived from the lists above)
FRESH_ORDINARY_INDOOR = frozenset(n for n in TRAIN_INDOOR if v3_room_part(n) == "test")
VAL_ORDINARY_INDOOR = frozenset(n for n in TRAIN_INDOOR if v3_room_part(n) == "val")
FRESH_INDOOR_FIRE_PHOTOS = frozenset(n for n in POOL_INDOOR_FIRE_PHOTOS if v3_fire_photo_held(n))
