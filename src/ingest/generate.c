/*
 * generate.c -- `patron generate`: a realistic synthetic loyalty-program data set
 * (SPEC §2), written as members.csv, orders.csv, events.jsonl and params.json.
 *
 * One pass over the members 1..N.  Member i draws everything from its own random stream
 * (rng_seed_stream(seed, STREAM_MEMBER, i)), so nothing about earlier members needs
 * remembering: memory is the catalog, three output buffers and per-member scratch arrays
 * that are reused (bounded by one member's history).  For each member, in this order:
 *   1. the profile                                   -> one row of members.csv;
 *   2. the purchase history (BG/NBD: rate lambda ~ Gamma(r, alpha) per day, drop-out
 *      p ~ Beta(a, b) after each repeat purchase), its returns merged in by time, then
 *      the guest orders drawn alongside it (each followed by its return, if any)
 *                                                    -> rows of orders.csv;
 *   3. the other events, sorted by time              -> lines of events.jsonl.
 * Enrolment times are stratified quantiles ((i - 1 + u) / N of the enrolment
 * distribution), so ids are in enrolment order and a referrer (an earlier id) always
 * enrolled before the member it referred.  Malformed rows (--bad-rows) are decided by a
 * stream of their own, so the well-formed data is the same whatever the rate.
 *
 * Hot path: an order's "O..,M..,ts," prefix and ",channel,store,orig\n" suffix are built
 * once per order, and each SKU's id, price text and "category,brand" are precomputed,
 * so a line item is a handful of memcpy's into a 4 MiB buffer written with fwrite.
 */
#include "ingest/generate.h"

#include "base/err.h"
#include "base/mem.h"
#include "base/time.h"
#include "ingest/rng.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- the generating parameters ------------------------------------------------- */

/* clang-format off */

typedef struct gen_params {
    double r, alpha;             /* purchase rate lambda ~ Gamma(shape r, rate alpha), per day */
    double a, b;                 /* drop-out p ~ Beta(a, b), after each repeat purchase */
    double never_buy;            /* share of members who never purchase */
    double first_at_signup;      /* share whose first purchase comes with the sign-up */
    double first_delay_days;     /* otherwise: mean (exponential) days to the first purchase */
    double launch_share;         /* share of members enrolled in the launch period */
    double launch_days;          /* length of the launch period (at most a quarter of the window) */
    double items_per_order;      /* target mean line items per order (sets basket_mu) */
    double basket_sigma;         /* log-sd of an order's value around the member's level */
    double member_spend_sigma;   /* log-sd of members' spend levels */
    double fill_calibration;     /* measured correction of the item-count model (see basket_mu) */
    double favourite_share;      /* share of a member's items from their favourite categories */
    double zipf_s;               /* SKU popularity exponent within a category */
    double return_rate;          /* share of orders with a return */
    double return_delay_days;    /* mean days (after a 1-day minimum) from order to return */
    double return_item_share;    /* share of an order's line items returned */
    double guest_share;          /* share of orders made by non-members */
    double campaign_interval_days;
    double campaign_reach;       /* share of consenting members a campaign is sent to */
    double referred_share;       /* share of members referred by an earlier member */
    double survey_share;         /* share of members answering the survey */
    double consent_change_share; /* share of members changing a consent after enrolling */
    double views_base, views_per_order; /* mean view events: base + per order */
    double custom_mean;          /* mean custom events per member */
    double points_per_unit;      /* earn rate assumed to keep redemptions affordable */
} gen_params;

static const gen_params DEFAULT_PARAMS = {
    .r = 0.75,
    .alpha = 45.0,
    .a = 0.9,
    .b = 5.0,
    .never_buy = 0.08,
    .first_at_signup = 0.55,
    .first_delay_days = 30.0,
    .launch_share = 0.25,
    .launch_days = 30.0,
    .items_per_order = 4.4,
    .basket_sigma = 0.5,
    .member_spend_sigma = 0.35,
    .fill_calibration = 0.86,
    .favourite_share = 0.6,
    .zipf_s = 1.07,
    .return_rate = 0.04,
    .return_delay_days = 6.0,
    .return_item_share = 0.6,
    .guest_share = 0.05,
    .campaign_interval_days = 14.0,
    .campaign_reach = 0.08,
    .referred_share = 0.08,
    .survey_share = 0.12,
    .consent_change_share = 0.06,
    .views_base = 0.8,
    .views_per_order = 0.3,
    .custom_mean = 0.5,
    .points_per_unit = 1.0,
};

/* clang-format on */

enum { STREAM_MEMBER = 1, STREAM_CATALOG = 2, STREAM_CAMPAIGN = 3, STREAM_BAD = 4 };

#define GEN_BUF_SIZE      ((size_t)4 << 20) /* per output file */
#define GEN_ROW_MAX       ((size_t)8192)    /* no row or line is longer */
#define GEN_MAX_LINES     60                /* line items per order */
#define GEN_MAX_ORDERS    20000             /* orders per member (a safety bound, never reached) */
#define GEN_MAX_CAMPAIGNS 512
#define GEN_REFERRAL_SPAN 50000 /* a referrer is among the previous 50000 members */

/* ---- static tables: catalog, geography, people ----------------------------------- */

/* clang-format off */

typedef struct gen_category_def {
    const char *name;
    double weight;   /* share of items (population) */
    uint32_t skus;
    double median;   /* price: median x LogNormal(0, sigma) */
    double sigma;
    int bulk;        /* grocery-like: larger quantities */
    const char *brands[7];
} gen_category_def;

static const gen_category_def CATEGORIES[] = {
    {"shoes", 8, 250, 65, 0.45, 0, {"Stridewell", "Northpeak", "Urbanstep", "Kinetiq", "Solace"}},
    {"apparel", 14, 500, 28, 0.55, 0,
     {"Loomline", "Thread & Co", "Basics Lab", "Marlowe", "Northpeak", "Verdant"}},
    {"accessories", 5, 200, 18, 0.6, 0, {"Marlowe", "Cartwell", "Loomline", "Lumen"}},
    {"outdoor", 5, 200, 45, 0.7, 0, {"Northpeak", "Ridgeway", "Trailcraft", "Fjellbu"}},
    {"sports", 6, 220, 30, 0.7, 0, {"Kinetiq", "Pulse Athletics", "Ridgeway", "Fieldhouse"}},
    {"beauty", 9, 260, 14, 0.6, 0, {"Lumière", "Petal & Stone", "Glowfield", "Pure Ritual"}},
    {"electronics", 4, 200, 80, 0.9, 0, {"Voltix", "Sonari", "Pixelon", "Nimbus"}},
    {"home", 7, 250, 22, 0.7, 0, {"Hearthly", "Nordhus", "Casa Viva", "Linenly"}},
    {"kitchen", 5, 160, 18, 0.6, 0, {"Hearthly", "Copperleaf", "Chef's Table", "Nordhus"}},
    {"grocery", 18, 450, 3.5, 0.6, 1, {"Green Basket", "Harvest Lane", "Daily Pantry", "Verdant"}},
    {"toys", 4, 160, 20, 0.6, 0, {"Tinkertown", "Bright Blocks", "Wonderloop"}},
    {"books", 5, 220, 13, 0.35, 0, {"Paperlane Press", "Inkwell", "Folio House"}},
    {"garden", 2, 100, 20, 0.7, 0, {"Verdant", "Greenthumb", "Ridgeway"}},
    {"pets", 4, 120, 12, 0.7, 0, {"Pawsome", "Whisker & Tail", "Harvest Lane"}},
    {"jewelry", 2, 80, 40, 0.8, 0, {"Aurelia", "Lumen", "Marlowe"}},
    {"luggage", 1, 60, 90, 0.5, 0, {"Voyageur", "Ridgeway", "Cartwell"}},
};
#define NCAT ((int)(sizeof CATEGORIES / sizeof CATEGORIES[0]))

enum {
    CAT_SHOES, CAT_APPAREL, CAT_ACCESSORIES, CAT_OUTDOOR, CAT_SPORTS, CAT_BEAUTY,
    CAT_ELECTRONICS, CAT_HOME, CAT_KITCHEN, CAT_GROCERY, CAT_TOYS, CAT_BOOKS, CAT_GARDEN,
    CAT_PETS, CAT_JEWELRY, CAT_LUGGAGE
};

typedef struct gen_interest_def {
    const char *tag;
    double weight;
    int cats[3]; /* categories it draws the member to; -1 ends */
} gen_interest_def;

static const gen_interest_def INTERESTS[] = {
    {"eco-friendly", 1.2, {CAT_GROCERY, CAT_GARDEN, -1}},
    {"running", 0.8, {CAT_SHOES, CAT_SPORTS, -1}},
    {"outdoor", 0.9, {CAT_OUTDOOR, CAT_SHOES, -1}},
    {"fashion", 1.2, {CAT_APPAREL, CAT_ACCESSORIES, CAT_JEWELRY}},
    {"tech", 1.0, {CAT_ELECTRONICS, -1, -1}},
    {"home", 1.0, {CAT_HOME, CAT_KITCHEN, -1}},
    {"beauty", 1.0, {CAT_BEAUTY, -1, -1}},
    {"kids", 0.7, {CAT_TOYS, CAT_APPAREL, -1}},
    {"gourmet", 0.7, {CAT_GROCERY, CAT_KITCHEN, -1}},
    {"fitness", 0.9, {CAT_SPORTS, CAT_APPAREL, -1}},
    {"travel", 0.9, {CAT_LUGGAGE, CAT_OUTDOOR, -1}},
    {"pets", 0.6, {CAT_PETS, -1, -1}},
    {"books", 0.6, {CAT_BOOKS, -1, -1}},
    {"gardening", 0.4, {CAT_GARDEN, -1, -1}},
    {"gaming", 0.5, {CAT_ELECTRONICS, CAT_TOYS, -1}},
    {"music", 0.5, {CAT_ELECTRONICS, CAT_BOOKS, -1}},
    {"diy", 0.4, {CAT_HOME, CAT_GARDEN, -1}},
};
#define NINTEREST ((int)(sizeof INTERESTS / sizeof INTERESTS[0]))
enum { INT_FASHION = 3, INT_BEAUTY = 6, INT_KIDS = 7, INT_GARDENING = 13, INT_GAMING = 14 };

/* postal and phone patterns: '#' a digit, 'A' a capital letter, anything else as is */
typedef struct gen_city_def {
    const char *name, *region, *postal;
    double weight;
    int stores;
} gen_city_def;

typedef struct gen_country_def {
    const char *code;
    double weight;
    const char *phone;
    const char *lang[2];
    double lang0; /* share speaking lang[0] */
    gen_city_def cities[7];
    const char *last[9]; /* common family names, "name|ascii" when not ASCII */
} gen_country_def;

static const gen_country_def COUNTRIES[] = {
    {"US", 0.35, "+1 ### 555 ####", {"en", "es"}, 0.9,
     {{"New York", "NY", "100##", 5, 4}, {"Los Angeles", "CA", "900##", 4, 3},
      {"Chicago", "IL", "606##", 3, 2}, {"Houston", "TX", "770##", 2.5, 2},
      {"Seattle", "WA", "981##", 2, 2}, {"Washington, D.C.", "DC", "200##", 1.5, 1}},
     {"Smith", "Johnson", "Williams", "Brown", "Jones", "Miller", "Davis", "Nguyen", "Patel"}},
    {"GB", 0.15, "+44 7700 900###", {"en", "en"}, 1.0,
     {{"London", "England", "SW# #AA", 5, 3}, {"Manchester", "England", "M# #AA", 2, 1},
      {"Edinburgh", "Scotland", "EH# #AA", 1.5, 1}, {"Cardiff", "Wales", "CF## #AA", 1, 1}},
     {"Taylor", "Wilson", "Evans", "Thomas", "O'Brien", "Murphy", "Roberts", "Walker", "Singh"}},
    {"DE", 0.15, "+49 15# #######", {"de", "en"}, 0.95,
     {{"Berlin", "Berlin", "10###", 4, 2}, {"München", "Bayern", "80###", 3, 2},
      {"Hamburg", "Hamburg", "20###", 2.5, 2}, {"Köln", "Nordrhein-Westfalen", "50###", 2, 1},
      {"Frankfurt am Main", "Hessen", "60###", 2, 1}},
     {"Müller|mueller", "Schmidt", "Schneider", "Fischer", "Weber", "Meyer", "Wagner", "Becker",
      "Schulz"}},
    {"FR", 0.12, "+33 6 ## ## ## ##", {"fr", "en"}, 0.97,
     {{"Paris", "Île-de-France", "750##", 5, 3}, {"Lyon", "Auvergne-Rhône-Alpes", "690##", 2, 1},
      {"Marseille", "Provence-Alpes-Côte d'Azur", "130##", 2, 1},
      {"Toulouse", "Occitanie", "310##", 1.5, 1}},
     {"Martin", "Bernard", "Dubois", "Durand", "Lefèvre|lefevre", "Moreau", "Laurent", "Girard",
      "Roux"}},
    {"ES", 0.08, "+34 6## ### ###", {"es", "ca"}, 0.85,
     {{"Madrid", "Comunidad de Madrid", "280##", 4, 2}, {"Barcelona", "Cataluña", "080##", 3, 2},
      {"Valencia", "Comunidad Valenciana", "460##", 1.5, 1}},
     {"García|garcia", "Fernández|fernandez", "López|lopez", "Martínez|martinez", "Sánchez|sanchez",
      "Pérez|perez", "Gómez|gomez", "Ruiz", "Díaz|diaz"}},
    {"NL", 0.07, "+31 6 ########", {"nl", "en"}, 0.93,
     {{"Amsterdam", "Noord-Holland", "10## AA", 3, 2}, {"Rotterdam", "Zuid-Holland", "30## AA", 2, 1},
      {"Utrecht", "Utrecht", "35## AA", 1.5, 1}},
     {"de Jong", "Jansen", "de Vries", "van den Berg", "Bakker", "Visser", "Smit", "Meijer",
      "Mulder"}},
    {"CA", 0.08, "+1 ### 555 ####", {"en", "fr"}, 0.75,
     {{"Toronto", "Ontario", "M#A #A#", 3, 2}, {"Montréal", "Quebec", "H#A #A#", 2, 2},
      {"Vancouver", "British Columbia", "V#A #A#", 1.5, 1}},
     {"Tremblay", "Roy", "Gagnon", "Côté|cote", "Wilson", "Campbell", "Lee", "Martin", "Bouchard"}},
};
#define NCOUNTRY ((int)(sizeof COUNTRIES / sizeof COUNTRIES[0]))
#define MAX_CITIES 7
#define MAX_STORES 128

/* first names; "name|ascii" when the name is not ASCII */
static const char *const FIRST_F[] = {
    "Anna", "Emma", "Olivia", "Sophie", "Mia", "Léa|lea", "Chloé|chloe", "Hannah", "Laura",
    "Julia", "Sara", "Emily", "Lucía|lucia", "Marie", "Zoë|zoe", "Ingrid", "Aisha", "Mei",
    "Priya", "Grace", "Charlotte", "Elena", "Nora", "Ava", "Isabel"};
static const char *const FIRST_M[] = {
    "Liam", "Noah", "Lucas", "Leon", "Paul", "Jonas", "Hugo", "Mateo", "Oliver", "James",
    "Daniel", "David", "Thomas", "Max", "Björn|bjorn", "José|jose", "Luca", "Ethan", "Samuel",
    "Arjun", "Wei", "Omar", "Finn", "Adam", "Felix"};
#define NFIRST_F ((uint64_t)(sizeof FIRST_F / sizeof FIRST_F[0]))
#define NFIRST_M ((uint64_t)(sizeof FIRST_M / sizeof FIRST_M[0]))

/* SPEC §1.4 channels, then the consent purposes: consent bit numbers */
enum { CH_EMAIL, CH_SMS, CH_PUSH, CH_APP, CH_WEB, CH_SOCIAL, CH_MAIL, NCHANNEL };
enum { P_MARKETING = NCHANNEL, P_PROFILING, P_PERSONALIZATION, NCONSENT };
static const char *const CONSENT_NAMES[NCONSENT] = {
    "email", "sms", "push", "app", "web", "social", "mail", "marketing", "profiling",
    "personalization"};
/* share granting each, and the share of empty cells */
static const double CONSENT_GRANT[NCONSENT] = {0.82, 0.35, 0.38, 0.55, 0.6, 0.22, 0.3,
                                              0.8, 0.96, 0.9};
static const double CONSENT_EMPTY[NCONSENT] = {0, 0.08, 0.08, 0.08, 0.08, 0.08, 0.08,
                                              0, 0, 0.05};

enum { SIGNUP_STORE, SIGNUP_WEB, SIGNUP_APP, SIGNUP_EMAIL, SIGNUP_SOCIAL, NSIGNUP };
static const char *const SIGNUP_NAMES[NSIGNUP] = {"store", "web", "app", "email", "social"};
static const double SIGNUP_W[NSIGNUP] = {0.38, 0.30, 0.26, 0.03, 0.03};
/* preferred channel: CH_* weights, and an empty cell */
static const double PREFERRED_W[NCHANNEL + 1] = {0.45, 0.12, 0.10, 0.12, 0.06, 0.03, 0.02, 0.10};

enum { OCH_WEB, OCH_APP, OCH_STORE, NOCH };
static const char *const ORDER_CHANNELS[NOCH] = {"web", "app", "store"};
/* a member's order-channel weights by sign-up channel */
static const double ORDER_CH_W[NSIGNUP][NOCH] = {
    {0.15, 0.10, 0.75}, {0.65, 0.15, 0.20}, {0.15, 0.70, 0.15}, {0.55, 0.20, 0.25},
    {0.55, 0.20, 0.25}};

static const double STORE_HOURS[24] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 6, 8,
                                       9, 9, 8, 8, 9, 10, 10, 7, 3, 0, 0, 0};
static const double ONLINE_HOURS[24] = {1.5, 1, 0.6, 0.4, 0.4, 0.6, 1.5, 3, 4, 4.5, 5, 5,
                                        6, 5.5, 5, 5, 5, 5.5, 6.5, 8, 9, 8.5, 6, 3};

typedef struct gen_reward {
    const char *id;
    int points;
} gen_reward;
static const gen_reward REWARDS[] = {{"RWD-FREESHIP", 250}, {"RWD-05OFF", 500}, {"RWD-TOTE", 750},
                                     {"RWD-10OFF", 1000}, {"RWD-GIFTBOX", 2000}};
#define NREWARD ((int)(sizeof REWARDS / sizeof REWARDS[0]))

enum { PR_WELCOME, PR_BIRTHDAY, PR_REFERRAL, PR_REVIEW, PR_GOODWILL, PR_CORRECTION, NREASON };
static const char *const POINT_REASONS[NREASON] = {"welcome", "birthday", "referral",
                                                   "review", "goodwill", "correction"};
static const int POINT_AMOUNTS[NREASON] = {100, 200, 250, 50, 150, -20};

enum { ACT_SENT, ACT_DELIVERED, ACT_OPENED, ACT_CLICKED, ACT_CONVERTED, ACT_UNSUBSCRIBED,
       ACT_BOUNCED };
static const char *const ACTIONS[] = {"sent", "delivered", "opened", "clicked",
                                      "converted", "unsubscribed", "bounced"};
/* per message channel (email, sms, push, app): bounce, open, click (after an open; for
 * sms, which has no open tracking, directly after delivery) */
static const double MSG_BOUNCE[4] = {0.02, 0.03, 0.04, 0.0};
static const double MSG_OPEN[4] = {0.22, 0.0, 0.08, 0.30};
static const double MSG_CLICK[4] = {0.15, 0.06, 0.35, 0.12};
static const int MSG_CHANNEL[4] = {CH_EMAIL, CH_SMS, CH_PUSH, CH_APP};
static const double CAMPAIGN_CH_W[4] = {0.60, 0.12, 0.20, 0.08};

enum { EV_MESSAGE, EV_VIEW, EV_SURVEY, EV_REFERRAL, EV_REDEMPTION, EV_POINTS, EV_CONSENT,
       EV_CUSTOM, NEVTYPE };
static const char *const EVENT_TYPES[NEVTYPE] = {"message", "view", "survey", "referral",
                                                 "redemption", "points", "consent", "custom"};
enum { CU_APP_OPEN, CU_WISHLIST_ADD, CU_STORE_VISIT };
static const char *const CUSTOM_NAMES[] = {"app_open", "wishlist_add", "store_visit"};
static const char *const SHOPPING_FOR[] = {"self", "family", "gifts"};

/* clang-format on */

/* ---- runtime state ---------------------------------------------------------------- */

typedef struct gen_sku {
    int64_t price; /* cents */
    uint16_t cat;
    uint8_t brand, id_len, price_len, tail_len;
    char id[12];        /* SKU-00042 */
    char price_txt[16]; /* 12.99 */
    char tail[56];      /* category,brand */
} gen_sku;

typedef struct gen_line {
    uint32_t sku;
    int32_t qty;
} gen_line;

typedef struct gen_order {
    int64_t ts;
    int64_t amount;   /* cents; negative for a return */
    int64_t returned; /* cents returned from this order (positive), if any */
    uint64_t id;      /* number of the O... or R... id, once written */
    uint32_t line0, nlines;
    uint32_t orig;  /* a return: index of the returned order */
    uint16_t store; /* store number, 0 = none */
    uint8_t channel, is_return;
} gen_order;

typedef struct gen_event {
    int64_t ts;
    uint64_t who; /* member number the event belongs to */
    int64_t n;    /* type-specific: campaign, sku, points, referred member, ... */
    uint32_t seq;
    uint8_t type, sub, sub2;
} gen_event;

typedef struct gen_member {
    uint64_t num;
    int64_t enrolled;
    int country, city, gender, signup, preferred; /* preferred: CH_* or -1 */
    int lang;
    int has_birth, bmonth, bday;
    int32_t birth_days;
    uint32_t interests;
    uint32_t consent;       /* granted (an empty profiling/personalization cell = granted) */
    uint32_t consent_empty; /* cells left empty */
    int fav[3], nfav;
    double lambda, p, spend_mu, engagement;
    double ch_cum[NOCH];
    uint16_t home_store;
    uint64_t referrer; /* 0 = none */
    int loyalty_card, household;
} gen_member;

typedef struct gen_file {
    FILE *f;
    char *buf;
    size_t len;
    int failed; /* errno of the first failed write, 0 if none */
} gen_file;

typedef struct gen_counts {
    uint64_t members, members_with_orders, member_orders, guest_orders, line_items, returns,
        return_items, events, ev_type[NEVTYPE], bad_member_rows, bad_order_rows, bad_orders,
        referrals;
    int64_t revenue, returned; /* cents */
    double expected_member_orders, sum_lambda, sum_p;
    double sum_log_basket, sum_log_basket2; /* over orders (not returns) */
} gen_counts;

typedef struct gen_state {
    const gen_opts *o;
    gen_params P;
    double basket_mu, mean_item_value;
    int id_width;
    int64_t start, end;
    gen_file members, orders, events;
    rng bad;

    gen_sku *skus;
    uint32_t nskus;
    uint32_t
        *rank_sku; /* category c, popularity rank k (1-based) -> rank_sku[cat_first[c] + k - 1] */
    uint32_t cat_first[NCAT];
    rng_zipf cat_zipf[NCAT];
    double cat_cum[NCAT];

    double country_cum[NCOUNTRY];
    double city_cum[NCOUNTRY][MAX_CITIES];
    int ncities[NCOUNTRY], nlast[NCOUNTRY];
    uint16_t city_store0[NCOUNTRY][MAX_CITIES]; /* first store number of the city */
    uint16_t country_store0[NCOUNTRY], country_nstores[NCOUNTRY];
    uint16_t nstores;
    double interest_w[NINTEREST];
    double tod_cum[2][24]; /* [0] online, [1] store */

    int ncampaigns;
    int64_t camp_ts[GEN_MAX_CAMPAIGNS];
    uint8_t camp_ch[GEN_MAX_CAMPAIGNS]; /* index into MSG_CHANNEL */

    gen_order *ord;
    size_t ord_cap, nord;
    gen_line *lines;
    size_t line_cap, nline;
    gen_event *ev;
    size_t ev_cap, nev;
    int oom;

    uint64_t next_order, next_return, next_event;
    gen_counts c;
} gen_state;

/* ---- formatting ------------------------------------------------------------------ */

static inline char *put(char *p, const char *s, size_t n)
{
    memcpy(p, s, n);
    return p + n;
}

static inline char *puts0(char *p, const char *s)
{
    return put(p, s, strlen(s));
}

static char *put_u64(char *p, uint64_t v)
{
    char t[20];
    int n = 0;
    do {
        t[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = t[--n];
    return p;
}

static char *put_i64(char *p, int64_t v)
{
    if (v < 0) {
        *p++ = '-';
        return put_u64(p, (uint64_t)0 - (uint64_t)v);
    }
    return put_u64(p, (uint64_t)v);
}

/* PREFIX then v zero-padded to width digits (more if v needs them). */
static char *put_id(char *p, char prefix, uint64_t v, int width)
{
    int digits = 1;
    for (uint64_t t = v; t >= 10; t /= 10)
        digits++;
    *p++ = prefix;
    for (int i = digits; i < width; i++)
        *p++ = '0';
    return put_u64(p, v);
}

static char *put_money(char *p, int64_t cents)
{
    uint64_t u = cents < 0 ? (uint64_t)0 - (uint64_t)cents : (uint64_t)cents;
    if (cents < 0) *p++ = '-';
    p = put_u64(p, u / 100);
    *p++ = '.';
    *p++ = (char)('0' + u % 100 / 10);
    *p++ = (char)('0' + u % 10);
    return p;
}

static char *put_ts(char *p, int64_t ts)
{
    char b[TIME_FMT_LEN];
    time_format(ts, b);
    return puts0(p, b);
}

static char *put_date(char *p, int32_t days)
{
    char b[TIME_FMT_LEN];
    time_format_date(days, b);
    return puts0(p, b);
}

/* One CSV cell, RFC 4180-quoted when it holds a comma, quote or line end. */
static char *put_csv(char *p, const char *s, size_t n)
{
    if (!memchr(s, ',', n) && !memchr(s, '"', n) && !memchr(s, '\n', n) && !memchr(s, '\r', n))
        return put(p, s, n);
    *p++ = '"';
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"') *p++ = '"';
        *p++ = s[i];
    }
    *p++ = '"';
    return p;
}

/* "display|ascii" table entries: the display part, and the lower-case ASCII slug for
 * e-mail addresses (letters and digits only). */
static size_t name_display(const char *e, const char **s)
{
    const char *bar = strchr(e, '|');
    *s = e;
    return bar ? (size_t)(bar - e) : strlen(e);
}

static char *put_slug(char *p, const char *e)
{
    const char *bar = strchr(e, '|');
    const char *s = bar ? bar + 1 : e;
    for (; *s && *s != '|'; s++) {
        char ch = *s;
        if (ch >= 'A' && ch <= 'Z')
            *p++ = (char)(ch - 'A' + 'a');
        else if ((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9'))
            *p++ = ch;
    }
    return p;
}

/* Expands a pattern: '#' a digit, 'A' a capital letter (no I, O, Q), others as is. */
static char *put_pattern(char *p, rng *r, const char *pat)
{
    static const char letters[] = "ABCDEFGHJKLMNPRSTUVWXYZ";
    for (; *pat; pat++) {
        if (*pat == '#')
            *p++ = (char)('0' + rng_below(r, 10));
        else if (*pat == 'A')
            *p++ = letters[rng_below(r, sizeof letters - 1)];
        else
            *p++ = *pat;
    }
    return p;
}

/* ---- output files ---------------------------------------------------------------- */

static void gf_flush(gen_file *f)
{
    if (f->len && !f->failed && fwrite(f->buf, 1, f->len, f->f) != f->len)
        f->failed = errno ? errno : EIO;
    f->len = 0;
}

/* Room for one row (at most GEN_ROW_MAX bytes); gf_end() commits what was written. */
static char *gf_begin(gen_file *f)
{
    if (f->len + GEN_ROW_MAX > GEN_BUF_SIZE) gf_flush(f);
    return f->buf + f->len;
}

static void gf_end(gen_file *f, const char *p)
{
    size_t n = (size_t)(p - (f->buf + f->len));
    PATRON_ASSERT(n <= GEN_ROW_MAX);
    f->len += n;
}

static int gf_open(gen_file *f, const char *dir, const char *name, patron_error *err)
{
    char path[4096];
    int n = snprintf(path, sizeof path, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= sizeof path)
        return err_set(err, PATRON_EUSAGE, "output path '%s' is too long", dir);
    f->buf = mem_alloc(GEN_BUF_SIZE);
    if (!f->buf) return err_set(err, PATRON_ENOMEM, "out of memory");
    f->f = fopen(path, "wb");
    if (!f->f) return err_set(err, PATRON_EIO, "cannot create '%s': %s", path, strerror(errno));
    setvbuf(f->f, NULL, _IONBF, 0); /* our buffer is the buffer */
    return PATRON_OK;
}

/* Flushes and closes; returns the errno of the first failure, 0 if none. */
static int gf_close(gen_file *f)
{
    int e = 0;
    if (f->f) {
        gf_flush(f);
        e = f->failed;
        if (fclose(f->f) != 0 && !e) e = errno ? errno : EIO;
        f->f = NULL;
    }
    mem_free(f->buf);
    f->buf = NULL;
    return e;
}

/* mkdir -p */
static int make_dirs(const char *dir, patron_error *err)
{
    char path[4096];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof path)
        return err_set(err, PATRON_EUSAGE, "bad output directory '%s'", dir);
    memcpy(path, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (path[i] != '/' && path[i] != '\0') continue;
        char saved = path[i];
        path[i] = '\0';
        if (mkdir(path, 0777) != 0 && errno != EEXIST)
            return err_set(err, PATRON_EIO, "cannot create directory '%s': %s", path,
                           strerror(errno));
        path[i] = saved;
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return err_set(err, PATRON_EIO, "'%s' is not a directory", dir);
    return PATRON_OK;
}

/* ---- small sampling helpers ------------------------------------------------------- */

static void cumulate(double *cum, const double *w, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++)
        cum[i] = (s += w[i]);
}

/* An index drawn with the weights whose running sums are cum[0..n). */
static int pick_cum(rng *r, const double *cum, int n)
{
    double u = rng_double(r) * cum[n - 1];
    for (int i = 0; i < n - 1; i++)
        if (u < cum[i]) return i;
    return n - 1;
}

static int pick_w(rng *r, const double *w, int n)
{
    double total = 0;
    for (int i = 0; i < n; i++)
        total += w[i];
    double u = rng_double(r) * total;
    for (int i = 0; i < n - 1; i++) {
        if (u < w[i]) return i;
        u -= w[i];
    }
    return n - 1;
}

/* A time of day on day `day` (days since the epoch) from the online or store profile. */
static int64_t day_time(const gen_state *g, rng *r, int64_t day, int store)
{
    int h = pick_cum(r, g->tod_cum[store ? 1 : 0], 24);
    return day * TIME_DAY + (int64_t)h * 3600 + (int64_t)rng_below(r, 3600);
}

/* ---- setup ------------------------------------------------------------------------- */

static int setup_catalog(gen_state *g, patron_error *err)
{
    rng r;
    rng_seed_stream(&r, g->o->seed, STREAM_CATALOG, 0);
    uint32_t total = 0;
    for (int c = 0; c < NCAT; c++)
        total += CATEGORIES[c].skus;
    g->skus = mem_calloc(total, sizeof *g->skus);
    g->rank_sku = mem_calloc(total, sizeof *g->rank_sku);
    if (!g->skus || !g->rank_sku) return err_set(err, PATRON_ENOMEM, "out of memory");
    g->nskus = total;

    double weights[NCAT], mean_item = 0, wsum = 0;
    uint32_t k = 0;
    for (int c = 0; c < NCAT; c++) {
        const gen_category_def *cd = &CATEGORIES[c];
        int nbrands = 0;
        while (nbrands < 7 && cd->brands[nbrands])
            nbrands++;
        double brand_w[7];
        for (int b = 0; b < nbrands; b++)
            brand_w[b] = 1.0 / (b + 1);
        g->cat_first[c] = k;
        rng_zipf_init(&g->cat_zipf[c], cd->skus, g->P.zipf_s);
        weights[c] = cd->weight;
        for (uint32_t j = 0; j < cd->skus; j++) {
            gen_sku *s = &g->skus[k + j];
            double price = cd->median * exp(cd->sigma * rng_normal(&r));
            int64_t cents =
                price >= 10 ? (int64_t)ceil(price) * 100 - 1 : (int64_t)floor(price * 100 + 0.5);
            if (cents < 25) cents = 25;
            s->price = cents;
            s->cat = (uint16_t)c;
            s->brand = (uint8_t)pick_w(&r, brand_w, nbrands);
            s->id_len = (uint8_t)(put_id(s->id, 'S', k + j + 1, 5) - s->id);
            /* "S00042" -> "SKU-00042" */
            memmove(s->id + 4, s->id + 1, s->id_len - 1u);
            memcpy(s->id, "SKU-", 4);
            s->id_len = (uint8_t)(s->id_len + 3);
            s->price_len = (uint8_t)(put_money(s->price_txt, cents) - s->price_txt);
            const char *brand = cd->brands[s->brand];
            size_t cl = strlen(cd->name), bl = strlen(brand);
            PATRON_ASSERT(cl + 1 + bl <= sizeof s->tail);
            char *t = put(s->tail, cd->name, cl);
            *t++ = ',';
            t = put(t, brand, bl);
            s->tail_len = (uint8_t)(t - s->tail);
            g->rank_sku[k + j] = k + j;
        }
        /* popularity ranks are a shuffle of the category's SKUs */
        for (uint32_t j = cd->skus - 1; j > 0; j--) {
            uint32_t q = (uint32_t)rng_below(&r, j + 1);
            uint32_t t = g->rank_sku[k + j];
            g->rank_sku[k + j] = g->rank_sku[k + q];
            g->rank_sku[k + q] = t;
        }
        /* expected value of one line item of this category under the Zipf popularity */
        double hsum = 0, vsum = 0;
        for (uint32_t j = 0; j < cd->skus; j++) {
            double w = pow((double)(j + 1), -g->P.zipf_s);
            hsum += w;
            vsum += w * (double)g->skus[g->rank_sku[k + j]].price / 100.0;
        }
        double mean_qty = cd->bulk ? 1.6 : 1.25;
        mean_item += cd->weight * mean_qty * vsum / hsum;
        wsum += cd->weight;
        k += cd->skus;
    }
    cumulate(g->cat_cum, weights, NCAT);
    g->mean_item_value = mean_item / wsum;
    /* An order keeps adding items while that brings its value nearer a log-normal target
     * V, so items per order ~ E[V] / (mean item value); basket_mu is set for the target
     * mean, the calibration factor absorbing what that approximation misses. */
    double s2 =
        g->P.basket_sigma * g->P.basket_sigma + g->P.member_spend_sigma * g->P.member_spend_sigma;
    g->basket_mu = log(g->P.items_per_order * g->mean_item_value * g->P.fill_calibration) - s2 / 2;
    return PATRON_OK;
}

static void setup_tables(gen_state *g)
{
    double cw[NCOUNTRY];
    uint16_t store = 1;
    for (int c = 0; c < NCOUNTRY; c++) {
        const gen_country_def *cd = &COUNTRIES[c];
        cw[c] = cd->weight;
        int n = 0;
        double w[MAX_CITIES];
        g->country_store0[c] = store;
        while (n < MAX_CITIES && cd->cities[n].name) {
            w[n] = cd->cities[n].weight;
            g->city_store0[c][n] = store;
            store = (uint16_t)(store + cd->cities[n].stores);
            n++;
        }
        g->ncities[c] = n;
        g->country_nstores[c] = (uint16_t)(store - g->country_store0[c]);
        cumulate(g->city_cum[c], w, n);
        int nl = 0;
        while (nl < 9 && cd->last[nl])
            nl++;
        g->nlast[c] = nl;
    }
    PATRON_ASSERT(store - 1 <= MAX_STORES);
    g->nstores = (uint16_t)(store - 1);
    cumulate(g->country_cum, cw, NCOUNTRY);
    for (int i = 0; i < NINTEREST; i++)
        g->interest_w[i] = INTERESTS[i].weight;
    cumulate(g->tod_cum[0], ONLINE_HOURS, 24);
    cumulate(g->tod_cum[1], STORE_HOURS, 24);
}

/* Campaigns every campaign_interval_days (longer for long windows, at most 512), at
 * 10:00 on their day, each on one channel. */
static void setup_campaigns(gen_state *g)
{
    rng r;
    rng_seed_stream(&r, g->o->seed, STREAM_CAMPAIGN, 0);
    double days = (double)(g->end - g->start) / TIME_DAY;
    double interval = g->P.campaign_interval_days;
    if (days / interval > GEN_MAX_CAMPAIGNS) interval = days / GEN_MAX_CAMPAIGNS;
    int64_t day0 = time_day_of(g->start);
    g->ncampaigns = 0;
    for (int k = 0; k < GEN_MAX_CAMPAIGNS; k++) {
        int64_t day = day0 + (int64_t)floor((k + 0.5) * interval);
        int64_t ts = day * TIME_DAY + 10 * 3600;
        if (ts > g->end) break;
        if (ts < g->start) continue;
        g->camp_ts[g->ncampaigns] = ts;
        g->camp_ch[g->ncampaigns] = (uint8_t)pick_w(&r, CAMPAIGN_CH_W, 4);
        g->ncampaigns++;
    }
}

/* ---- members ----------------------------------------------------------------------- */

/* Enrolment: a launch period (the first launch_days, at most a quarter of the window)
 * takes launch_share of the members, the rest enrol uniformly over the window.  Member
 * num of n gets the quantile (num - 1 + u) / n, so enrolment is in id order. */
static int64_t enrolment_time(const gen_state *g, rng *r, uint64_t num)
{
    double w_len = (double)(g->end - g->start);
    double launch = fmin(g->P.launch_days * TIME_DAY, w_len / 4);
    double w = g->P.launch_share;
    double q = ((double)(num - 1) + rng_double(r)) / (double)g->o->members;
    double x;
    if (launch <= 0)
        x = q * w_len;
    else if (q <= w + (1 - w) * launch / w_len)
        x = q / (w / launch + (1 - w) / w_len);
    else
        x = (q - w) * w_len / (1 - w);
    int64_t t = g->start + (int64_t)x;
    return t > g->end ? g->end : t;
}

static void draw_member(gen_state *g, rng *r, gen_member *m)
{
    const gen_params *P = &g->P;
    m->enrolled = enrolment_time(g, r, m->num);
    m->country = pick_cum(r, g->country_cum, NCOUNTRY);
    const gen_country_def *cd = &COUNTRIES[m->country];
    m->city = pick_cum(r, g->city_cum[m->country], g->ncities[m->country]);
    m->lang = rng_bernoulli(r, cd->lang0) ? 0 : 1;
    double u = rng_double(r);
    m->gender = u < 0.51 ? 0 : u < 0.97 ? 1 : u < 0.99 ? 2 : 3; /* f, m, x, empty */

    /* age ~ N(41, 14) truncated to 18..88, at the end of the window */
    double age = 41 + 14 * rng_normal(r);
    for (int t = 0; t < 8 && (age < 18 || age > 88); t++)
        age = 41 + 14 * rng_normal(r);
    age = fmin(88, fmax(18, age));
    m->has_birth = !rng_bernoulli(r, 0.04);
    m->birth_days =
        (int32_t)(time_day_of(g->end) - (int64_t)(age * 365.2425) - (int64_t)rng_below(r, 365));
    int y;
    time_civil_from_days(m->birth_days, &y, &m->bmonth, &m->bday);

    m->signup = pick_w(r, SIGNUP_W, NSIGNUP);
    double pw[NCHANNEL + 1];
    memcpy(pw, PREFERRED_W, sizeof pw);
    if (m->signup == SIGNUP_APP) {
        pw[CH_APP] *= 3;
        pw[CH_PUSH] *= 3;
    }
    int pref = pick_w(r, pw, NCHANNEL + 1);
    m->preferred = pref == NCHANNEL ? -1 : pref;

    /* interests: tags weighted by age and gender, drawn without replacement */
    double iw[NINTEREST];
    memcpy(iw, g->interest_w, sizeof iw);
    if (age >= 28 && age <= 50) iw[INT_KIDS] *= 2;
    if (age < 35) iw[INT_GAMING] *= 2;
    if (age > 50) iw[INT_GARDENING] *= 2;
    if (m->gender == 0) {
        iw[INT_BEAUTY] *= 2;
        iw[INT_FASHION] *= 1.5;
    } else if (m->gender == 1) {
        iw[INT_BEAUTY] *= 0.4;
    }
    uint64_t nint = rng_poisson(r, 1.7);
    if (nint > 5) nint = 5;
    m->interests = 0;
    m->nfav = 0;
    for (uint64_t k = 0; k < nint; k++) {
        int t = pick_w(r, iw, NINTEREST);
        iw[t] = 0;
        m->interests |= 1u << t;
        for (int j = 0; j < 3 && INTERESTS[t].cats[j] >= 0 && m->nfav < 3; j++) {
            int cat = INTERESTS[t].cats[j], seen = 0;
            for (int f = 0; f < m->nfav; f++)
                seen |= m->fav[f] == cat;
            if (!seen) m->fav[m->nfav++] = cat;
        }
    }
    if (m->nfav == 0) {
        m->fav[m->nfav++] = pick_cum(r, g->cat_cum, NCAT);
        if (rng_bernoulli(r, 0.5)) {
            int c2 = pick_cum(r, g->cat_cum, NCAT);
            if (c2 != m->fav[0]) m->fav[m->nfav++] = c2;
        }
    }

    /* consents: the preferred channel is usually granted; app sign-ups allow push/app */
    m->consent = m->consent_empty = 0;
    for (int k = 0; k < NCONSENT; k++) {
        double pg = CONSENT_GRANT[k];
        if (k == m->preferred) pg = 0.95;
        if (m->signup == SIGNUP_APP && (k == CH_PUSH || k == CH_APP))
            pg = k == CH_PUSH ? 0.75 : 0.9;
        if (rng_bernoulli(r, CONSENT_EMPTY[k])) {
            m->consent_empty |= 1u << k;
            if (k == P_PROFILING || k == P_PERSONALIZATION) /* program default: granted */
                m->consent |= 1u << k;
        } else if (rng_bernoulli(r, pg)) {
            m->consent |= 1u << k;
        }
    }

    m->referrer = 0;
    if (m->num > 1 && rng_bernoulli(r, P->referred_share)) {
        uint64_t span = m->num - 1 < GEN_REFERRAL_SPAN ? m->num - 1 : GEN_REFERRAL_SPAN;
        m->referrer = m->num - 1 - rng_below(r, span);
    }
    m->loyalty_card = rng_bernoulli(r, m->signup == SIGNUP_STORE ? 0.85 : 0.35);
    static const double HOUSEHOLD_W[7] = {0.15, 0.24, 0.29, 0.13, 0.12, 0.05, 0.02};
    m->household = pick_w(r, HOUSEHOLD_W, 7); /* 0 = empty cell */

    /* behaviour */
    m->lambda = rng_gamma(r, P->r) / P->alpha;
    m->p = rng_beta(r, P->a, P->b);
    m->spend_mu = g->basket_mu + P->member_spend_sigma * rng_normal(r);
    m->engagement = rng_beta(r, 1.5, 4.0);
    double chw[NOCH];
    for (int k = 0; k < NOCH; k++)
        chw[k] = ORDER_CH_W[m->signup][k] * rng_gamma(r, 3.0);
    cumulate(m->ch_cum, chw, NOCH);
    int ns = COUNTRIES[m->country].cities[m->city].stores;
    m->home_store = (uint16_t)(g->city_store0[m->country][m->city] + rng_below(r, (uint64_t)ns));
}

enum { MB_EMPTY_ID, MB_BAD_ENROLLED, MB_BAD_BIRTH, MB_BAD_CONSENT, MB_LONG_ID, MB_SHORT_ROW, NMB };

static void write_member(gen_state *g, rng *r, const gen_member *m)
{
    enum { NF = 30 };
    const char *fs[NF];
    size_t fn[NF];
    char tmp[2048], *t = tmp;
    const gen_country_def *cd = &COUNTRIES[m->country];
    const gen_city_def *city = &cd->cities[m->city];
#define SET(i, s, n) (fs[i] = (s), fn[i] = (n))
#define SET_TMP(i, expr)                                                                           \
    do {                                                                                           \
        char *b_ = t;                                                                              \
        t = (expr);                                                                                \
        SET(i, b_, (size_t)(t - b_));                                                              \
    } while (0)

    SET_TMP(0, put_id(t, 'M', m->num, g->id_width));
    SET_TMP(1, put_ts(t, m->enrolled));
    const char *first = m->gender == 0 || (m->gender >= 2 && rng_bernoulli(r, 0.5))
                            ? FIRST_F[rng_below(r, NFIRST_F)]
                            : FIRST_M[rng_below(r, NFIRST_M)];
    const char *last = cd->last[rng_below(r, (uint64_t)g->nlast[m->country])];
    if (rng_bernoulli(r, 0.04)) {
        SET(2, "", 0);
    } else {
        char *b = t;
        double v = rng_double(r);
        if (v < 0.7) {
            t = put_slug(t, first);
            *t++ = '.';
            t = put_slug(t, last);
        } else if (v < 0.9) {
            char *f0 = t;
            t = put_slug(t, first);
            t = f0 + 1;
            t = put_slug(t, last);
        } else {
            t = put_slug(t, first);
        }
        t = put_u64(t, m->num);
        double d = rng_double(r);
        t = puts0(t, d < 0.6 ? "@example.com" : d < 0.85 ? "@example.org" : "@example.net");
        SET(2, b, (size_t)(t - b));
    }
    if (rng_bernoulli(r, 0.25))
        SET(3, "", 0);
    else
        SET_TMP(3, put_pattern(t, r, cd->phone));
    const char *s;
    size_t n = name_display(first, &s);
    SET(4, s, n);
    if (rng_bernoulli(r, 0.01)) {
        SET(5, "", 0);
    } else {
        n = name_display(last, &s);
        SET(5, s, n);
    }
    if (m->has_birth)
        SET_TMP(6, put_date(t, m->birth_days));
    else
        SET(6, "", 0);
    static const char *const GENDERS[4] = {"f", "m", "x", ""};
    SET(7, GENDERS[m->gender], strlen(GENDERS[m->gender]));
    SET(8, cd->code, 2);
    SET(9, city->region, strlen(city->region));
    SET(10, city->name, strlen(city->name));
    if (rng_bernoulli(r, 0.03))
        SET(11, "", 0);
    else
        SET_TMP(11, put_pattern(t, r, city->postal));
    SET(12, cd->lang[m->lang], 2);
    SET(13, SIGNUP_NAMES[m->signup], strlen(SIGNUP_NAMES[m->signup]));
    if (m->preferred < 0)
        SET(14, "", 0);
    else
        SET(14, CONSENT_NAMES[m->preferred], strlen(CONSENT_NAMES[m->preferred]));
    if (m->referrer)
        SET_TMP(15, put_id(t, 'M', m->referrer, g->id_width));
    else
        SET(15, "", 0);
    {
        char *b = t;
        for (int k = 0; k < NINTEREST; k++) {
            if (!(m->interests & (1u << k))) continue;
            if (t != b) *t++ = ';';
            t = puts0(t, INTERESTS[k].tag);
        }
        SET(16, b, (size_t)(t - b));
    }
    for (int k = 0; k < NCONSENT; k++) {
        if (m->consent_empty & (1u << k))
            SET(17 + k, "", 0);
        else if (m->consent & (1u << k))
            SET(17 + k, "true", 4);
        else
            SET(17 + k, "false", 5);
    }
    SET(27, fs[1], fn[1]); /* consents stamped at enrolment */
    SET(28, m->loyalty_card ? "true" : "false", m->loyalty_card ? 4u : 5u);
    if (m->household)
        SET_TMP(29, put_u64(t, (uint64_t)m->household));
    else
        SET(29, "", 0);

    int nfields = NF;
    if (g->o->bad_rows > 0 && rng_double(&g->bad) < g->o->bad_rows) {
        g->c.bad_member_rows++;
        switch ((int)rng_below(&g->bad, NMB)) {
        case MB_EMPTY_ID:
            SET(0, "", 0);
            break;
        case MB_BAD_ENROLLED: { /* February 30th */
            char *b = t;
            t = put(t, fs[1], 5);
            t = puts0(t, "02-30");
            t = put(t, fs[1] + 10, fn[1] - 10);
            SET(1, b, (size_t)(t - b));
            break;
        }
        case MB_BAD_BIRTH:
            SET(6, "1985-13-45", 10);
            break;
        case MB_BAD_CONSENT:
            SET(17, "maybe", 5);
            break;
        case MB_LONG_ID: {
            char *b = t;
            t = put(t, fs[0], fn[0]);
            memset(t, 'x', 140);
            t += 140;
            SET(0, b, (size_t)(t - b));
            break;
        }
        default:
            nfields = 8;
            break;
        }
    }
    PATRON_ASSERT((size_t)(t - tmp) <= sizeof tmp);
#undef SET
#undef SET_TMP

    char *p = gf_begin(&g->members);
    for (int i = 0; i < nfields; i++) {
        if (i) *p++ = ',';
        p = put_csv(p, fs[i], fn[i]);
    }
    *p++ = '\n';
    gf_end(&g->members, p);
}

/* ---- orders ------------------------------------------------------------------------ */

static gen_order *new_order(gen_state *g)
{
    if (g->oom || MEM_GROW(g->ord, g->ord_cap, g->nord + 1) != 0) {
        g->oom = 1;
        return NULL;
    }
    gen_order *o = &g->ord[g->nord++];
    memset(o, 0, sizeof *o);
    o->line0 = (uint32_t)g->nline;
    return o;
}

static int add_line(gen_state *g, gen_order *o, uint32_t sku, int32_t qty)
{
    if (g->oom || MEM_GROW(g->lines, g->line_cap, g->nline + 1) != 0) {
        g->oom = 1;
        return -1;
    }
    g->lines[g->nline].sku = sku;
    g->lines[g->nline].qty = qty;
    g->nline++;
    o->nlines++;
    o->amount += qty * g->skus[sku].price;
    return 0;
}

/* Fills an order with items until its value is nearest a log-normal target: each draw
 * picks a category (a favourite with favourite_share, else by population weight), a SKU
 * by Zipf popularity within it and a quantity; a SKU drawn again raises the quantity. */
static void fill_order(gen_state *g, rng *r, gen_order *o, const gen_member *m, double mu)
{
    double target = exp(mu + g->P.basket_sigma * rng_normal(r)) * 100.0; /* cents */
    double sum = 0;
    for (int k = 0; k < GEN_MAX_LINES; k++) {
        int cat = m && rng_bernoulli(r, g->P.favourite_share)
                      ? m->fav[rng_below(r, (uint64_t)m->nfav)]
                      : pick_cum(r, g->cat_cum, NCAT);
        uint64_t rank = rng_zipf_next(r, &g->cat_zipf[cat]);
        uint32_t sku = g->rank_sku[g->cat_first[cat] + rank - 1];
        int32_t qty;
        if (CATEGORIES[cat].bulk) {
            uint64_t q = rng_poisson(r, 0.6);
            qty = (int32_t)(1 + (q > 5 ? 5 : q));
        } else {
            double u = rng_double(r);
            qty = u < 0.8 ? 1 : u < 0.95 ? 2 : 3;
        }
        double x = (double)qty * (double)g->skus[sku].price;
        if (o->nlines > 0 && sum + x / 2 >= target) break;
        sum += x;
        gen_line *dup = NULL;
        for (uint32_t j = 0; j < o->nlines; j++)
            if (g->lines[o->line0 + j].sku == sku) dup = &g->lines[o->line0 + j];
        if (dup) {
            dup->qty += qty;
            o->amount += qty * g->skus[sku].price;
        } else if (add_line(g, o, sku, qty) != 0) {
            return;
        }
    }
}

/* Maybe a return of order j (already in scratch): a day or more later, some of its items. */
static void maybe_return(gen_state *g, rng *r, size_t j)
{
    if (!rng_bernoulli(r, g->P.return_rate)) return;
    gen_order src = g->ord[j];
    int64_t day = time_day_of(src.ts) + 1 + (int64_t)rng_exp(r, 1.0 / g->P.return_delay_days);
    int64_t ts = day_time(g, r, day, src.channel == OCH_STORE);
    if (ts > g->end) return; /* it would happen after the data set's end */
    gen_order *o = new_order(g);
    if (!o) return;
    o->ts = ts;
    o->is_return = 1;
    o->orig = (uint32_t)j;
    o->channel = src.channel;
    o->store = src.store;
    for (uint32_t k = 0; k < src.nlines; k++) {
        if (!rng_bernoulli(r, g->P.return_item_share)) continue;
        gen_line l = g->lines[src.line0 + k];
        if (add_line(g, o, l.sku, -(int32_t)(1 + rng_below(r, (uint64_t)l.qty))) != 0) return;
    }
    if (o->nlines == 0) {
        gen_line l = g->lines[src.line0 + rng_below(r, src.nlines)];
        if (add_line(g, o, l.sku, -(int32_t)(1 + rng_below(r, (uint64_t)l.qty))) != 0) return;
    }
    g->ord[j].returned = -o->amount;
}

enum {
    OB_BAD_TS,
    OB_QTY_TEXT,
    OB_NEG_PRICE,
    OB_ZERO_QTY,
    OB_MISSING,
    OB_WRONG_MEMBER,
    OB_PRICE_TEXT,
    OB_SHORT_ROW,
    NOB
};

/* A malformed line-item row: the well-formed fields with one of them broken. */
static void write_bad_row(gen_state *g, const gen_order *o, const gen_line *l, uint64_t member,
                          int first_row, const char *oid, size_t oid_n, const char *ts, size_t ts_n,
                          const char *orig, size_t orig_n)
{
    enum { NF = 11 };
    const char *fs[NF];
    size_t fn[NF];
    char tmp[512], *t = tmp;
    const gen_sku *s = &g->skus[l->sku];
    const gen_category_def *cd = &CATEGORIES[s->cat];
    fs[0] = oid, fn[0] = oid_n;
    fs[1] = t;
    if (member) t = put_id(t, 'M', member, g->id_width);
    fn[1] = (size_t)(t - fs[1]);
    fs[2] = ts, fn[2] = ts_n;
    fs[3] = s->id, fn[3] = s->id_len;
    fs[4] = t;
    t = put_i64(t, l->qty);
    fn[4] = (size_t)(t - fs[4]);
    fs[5] = s->price_txt, fn[5] = s->price_len;
    fs[6] = cd->name, fn[6] = strlen(cd->name);
    fs[7] = cd->brands[s->brand], fn[7] = strlen(fs[7]);
    fs[8] = ORDER_CHANNELS[o->channel], fn[8] = strlen(fs[8]);
    fs[9] = t;
    if (o->store) t = put_id(t, 'S', o->store, 3);
    fn[9] = (size_t)(t - fs[9]);
    fs[10] = orig, fn[10] = orig_n;

    int kind = (int)rng_below(&g->bad, NOB), nfields = NF;
    if (kind == OB_WRONG_MEMBER && (first_row || !member)) kind = OB_BAD_TS;
    switch (kind) {
    case OB_BAD_TS: { /* month 13, day 45 */
        char *b = t;
        t = put(t, ts, 5);
        t = puts0(t, "13-45");
        t = put(t, ts + 10, ts_n - 10);
        fs[2] = b, fn[2] = (size_t)(t - b);
        break;
    }
    case OB_QTY_TEXT:
        fs[4] = "two", fn[4] = 3;
        break;
    case OB_NEG_PRICE: {
        char *b = t;
        *t++ = '-';
        t = put(t, s->price_txt, s->price_len);
        fs[5] = b, fn[5] = (size_t)(t - b);
        break;
    }
    case OB_ZERO_QTY:
        fs[4] = "0", fn[4] = 1;
        break;
    case OB_MISSING: {
        static const int required[4] = {2, 3, 4, 5};
        int f = required[rng_below(&g->bad, 4)];
        fs[f] = "", fn[f] = 0;
        break;
    }
    case OB_WRONG_MEMBER: {
        uint64_t other = member > 1 ? member - 1 : member + 1;
        fs[1] = t;
        t = put_id(t, 'M', other, g->id_width);
        fn[1] = (size_t)(t - fs[1]);
        break;
    }
    case OB_PRICE_TEXT: { /* a decimal comma, quoted */
        char *b = t;
        t = put(t, s->price_txt, s->price_len);
        char *dot = memchr(b, '.', (size_t)(t - b));
        if (dot) *dot = ',';
        fs[5] = b, fn[5] = (size_t)(t - b);
        break;
    }
    default:
        nfields = 5;
        break;
    }
    PATRON_ASSERT((size_t)(t - tmp) <= sizeof tmp);
    char *p = gf_begin(&g->orders);
    for (int i = 0; i < nfields; i++) {
        if (i) *p++ = ',';
        p = put_csv(p, fs[i], fn[i]);
    }
    *p++ = '\n';
    gf_end(&g->orders, p);
}

/* Writes one order or return (its rows adjacent), giving it the next O... or R... id. */
static void write_order(gen_state *g, gen_order *o, uint64_t member)
{
    char pre[128], suf[64], *p = pre;
    o->id = o->is_return ? g->next_return++ : g->next_order++;
    p = put_id(p, o->is_return ? 'R' : 'O', o->id, 9);
    size_t oid_n = (size_t)(p - pre);
    *p++ = ',';
    if (member) p = put_id(p, 'M', member, g->id_width);
    *p++ = ',';
    char *ts = p;
    p = put_ts(p, o->ts);
    size_t ts_n = (size_t)(p - ts);
    *p++ = ',';
    size_t pre_n = (size_t)(p - pre);

    char *q = suf;
    *q++ = ',';
    q = puts0(q, ORDER_CHANNELS[o->channel]);
    *q++ = ',';
    if (o->store) q = put_id(q, 'S', o->store, 3);
    *q++ = ',';
    char *orig = q;
    if (o->is_return) q = put_id(q, 'O', g->ord[o->orig].id, 9);
    size_t orig_n = (size_t)(q - orig);
    *q++ = '\n';
    size_t suf_n = (size_t)(q - suf);

    int bad = 0;
    for (uint32_t k = 0; k < o->nlines; k++) {
        const gen_line *l = &g->lines[o->line0 + k];
        if (g->o->bad_rows > 0 && rng_double(&g->bad) < g->o->bad_rows) {
            write_bad_row(g, o, l, member, k == 0, pre, oid_n, ts, ts_n, orig, orig_n);
            g->c.bad_order_rows++;
            bad = 1;
            continue;
        }
        const gen_sku *s = &g->skus[l->sku];
        char *w = gf_begin(&g->orders);
        w = put(w, pre, pre_n);
        w = put(w, s->id, s->id_len);
        *w++ = ',';
        w = put_i64(w, l->qty);
        *w++ = ',';
        w = put(w, s->price_txt, s->price_len);
        *w++ = ',';
        w = put(w, s->tail, s->tail_len);
        w = put(w, suf, suf_n);
        gf_end(&g->orders, w);
    }
    g->c.bad_orders += (uint64_t)bad;
    if (o->is_return) {
        g->c.returns++;
        g->c.return_items += o->nlines;
        g->c.returned += -o->amount;
    } else {
        double lv = log((double)o->amount / 100.0);
        g->c.line_items += o->nlines;
        g->c.revenue += o->amount;
        g->c.sum_log_basket += lv;
        g->c.sum_log_basket2 += lv * lv;
    }
}

static uint16_t order_store(const gen_state *g, rng *r, const gen_member *m, int channel)
{
    if (channel != OCH_STORE) return 0;
    if (rng_bernoulli(r, 0.85)) return m->home_store;
    return (uint16_t)(g->country_store0[m->country] + rng_below(r, g->country_nstores[m->country]));
}

static int cmp_return(const void *pa, const void *pb)
{
    const gen_order *a = pa, *b = pb;
    if (a->ts != b->ts) return a->ts < b->ts ? -1 : 1;
    return a->orig < b->orig ? -1 : a->orig > b->orig;
}

/*
 * The member's purchases: first purchase with the sign-up (first_at_signup) or after an
 * exponential delay; then repeat purchases at rate lambda per day, the member dropping
 * out with probability p after each repeat purchase (BG/NBD).  The Poisson clock runs in
 * continuous time; an order's time of day is then redrawn from the channel's profile
 * (kept after the previous order), which leaves days -- what BG/NBD reads -- unchanged.
 * Returns the number of member orders (the first entries of g->ord).
 */
static size_t member_orders(gen_state *g, rng *r, const gen_member *m)
{
    const gen_params *P = &g->P;
    g->nord = g->nline = 0;
    g->c.sum_lambda += m->lambda;
    g->c.sum_p += m->p;
    if (rng_bernoulli(r, P->never_buy)) return 0;
    int first_ch = m->signup == SIGNUP_STORE ? OCH_STORE
                   : m->signup == SIGNUP_WEB ? OCH_WEB
                   : m->signup == SIGNUP_APP ? OCH_APP
                                             : pick_cum(r, m->ch_cum, NOCH);
    int64_t ts;
    if (rng_bernoulli(r, P->first_at_signup)) {
        ts = m->enrolled + 120 + (int64_t)rng_below(r, 1800);
    } else {
        double tc = (double)m->enrolled + rng_exp(r, 1.0 / P->first_delay_days) * TIME_DAY;
        if (tc > (double)g->end) return 0;
        first_ch = pick_cum(r, m->ch_cum, NOCH);
        ts = day_time(g, r, (int64_t)floor(tc / TIME_DAY), first_ch == OCH_STORE);
        if (ts < m->enrolled + 60) ts = m->enrolled + 60 + (int64_t)rng_below(r, 3600);
    }
    if (ts > g->end) return 0;
    double T = (double)(g->end - ts) / TIME_DAY;
    double lp = m->lambda * m->p;
    g->c.expected_member_orders += 1 + (m->p > 0 ? -expm1(-lp * T) / m->p : m->lambda * T);

    double tc = (double)ts;
    int ch = first_ch;
    for (;;) {
        gen_order *o = new_order(g);
        if (!o) return 0;
        o->ts = ts;
        o->channel = (uint8_t)ch;
        o->store = order_store(g, r, m, ch);
        fill_order(g, r, o, m, m->spend_mu);
        if (g->oom) return 0;
        if (g->nord > 1 && rng_bernoulli(r, m->p)) /* drop-out after a repeat purchase */
            break;
        if (g->nord >= GEN_MAX_ORDERS || !(m->lambda > 0)) break;
        tc += rng_exp(r, m->lambda) * TIME_DAY;
        if (tc > (double)g->end) break;
        ch = pick_cum(r, m->ch_cum, NOCH);
        int64_t next = day_time(g, r, (int64_t)floor(tc / TIME_DAY), ch == OCH_STORE);
        if (next <= ts) next = ts + 60 + (int64_t)rng_below(r, 3600);
        if (next > g->end) break;
        ts = next;
    }
    return g->nord;
}

/* Member orders and their returns in time order, then the guest orders drawn for them. */
static void write_orders(gen_state *g, rng *r, const gen_member *m, size_t nmo)
{
    for (size_t j = 0; j < nmo; j++)
        maybe_return(g, r, j);
    size_t nret = g->nord - nmo;
    if (nret > 1) qsort(g->ord + nmo, nret, sizeof *g->ord, cmp_return);
    size_t i = 0, k = nmo;
    while (i < nmo || k < g->nord) {
        if (k >= g->nord || (i < nmo && g->ord[i].ts <= g->ord[k].ts))
            write_order(g, &g->ord[i++], m->num);
        else
            write_order(g, &g->ord[k++], m->num);
    }
    g->c.member_orders += nmo;
    g->c.members_with_orders += nmo > 0;

    /* guests: each member order brings one with probability g/(1-g), so guests are a
     * share g of all orders */
    double q = g->P.guest_share / (1 - g->P.guest_share);
    uint64_t nguest = 0;
    for (size_t j = 0; j < nmo; j++)
        nguest += (uint64_t)rng_bernoulli(r, q);
    int64_t day0 = time_day_of(g->start), ndays = time_day_of(g->end) - day0 + 1;
    for (uint64_t j = 0; j < nguest && !g->oom; j++) {
        size_t at = g->nord;
        gen_order *o = new_order(g);
        if (!o) return;
        double u = rng_double(r);
        int ch = u < 0.6 ? OCH_STORE : u < 0.9 ? OCH_WEB : OCH_APP;
        o->channel = (uint8_t)ch;
        o->store = ch == OCH_STORE ? (uint16_t)(1 + rng_below(r, g->nstores)) : 0;
        o->ts = day_time(g, r, day0 + (int64_t)rng_below(r, (uint64_t)ndays), ch == OCH_STORE);
        if (o->ts < g->start || o->ts > g->end)
            o->ts = g->start + (int64_t)rng_below(r, (uint64_t)(g->end - g->start) + 1);
        fill_order(g, r, o, NULL, g->basket_mu + g->P.member_spend_sigma * rng_normal(r));
        if (g->oom) return;
        write_order(g, &g->ord[at], 0);
        g->c.guest_orders++;
        size_t before = g->nord;
        maybe_return(g, r, at);
        if (g->nord > before) write_order(g, &g->ord[before], 0);
    }
}

/* ---- events ------------------------------------------------------------------------ */

/* Adds an event if it falls in the window; returns 1 if added. */
static int add_event(gen_state *g, int64_t ts, uint64_t who, int type, int sub, int sub2, int64_t n)
{
    if (ts < g->start || ts > g->end || g->oom) return 0;
    if (MEM_GROW(g->ev, g->ev_cap, g->nev + 1) != 0) {
        g->oom = 1;
        return 0;
    }
    gen_event *e = &g->ev[g->nev];
    e->ts = ts;
    e->who = who;
    e->n = n;
    e->seq = (uint32_t)g->nev;
    e->type = (uint8_t)type;
    e->sub = (uint8_t)sub;
    e->sub2 = (uint8_t)sub2;
    g->nev++;
    return 1;
}

static int cmp_event(const void *pa, const void *pb)
{
    const gen_event *a = pa, *b = pb;
    if (a->ts != b->ts) return a->ts < b->ts ? -1 : 1;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

static int64_t uniform_after(const gen_state *g, rng *r, int64_t from)
{
    if (from >= g->end) return g->end;
    return from + 1 + (int64_t)rng_below(r, (uint64_t)(g->end - from));
}

static uint32_t member_sku(const gen_state *g, rng *r, const gen_member *m)
{
    int cat = rng_bernoulli(r, g->P.favourite_share) ? m->fav[rng_below(r, (uint64_t)m->nfav)]
                                                     : pick_cum(r, g->cat_cum, NCAT);
    uint64_t rank = rng_zipf_next(r, &g->cat_zipf[cat]);
    return g->rank_sku[g->cat_first[cat] + rank - 1];
}

/* Campaign messages: each campaign after enrolment reaches a consenting member with
 * probability campaign_reach; responses depend on the channel, the member's engagement
 * and whether it is their preferred channel.  An unsubscription withdraws the channel. */
static void member_messages(gen_state *g, rng *r, const gen_member *m, uint32_t consent,
                            int64_t change_ts, int change_bit, int change_status)
{
    double e = m->engagement, f = 0.35 + 2.4 * e;
    int changed = 0;
    for (int k = 0; k < g->ncampaigns; k++) {
        int64_t ts = g->camp_ts[k];
        if (ts <= m->enrolled) continue;
        if (!changed && change_ts >= 0 && ts >= change_ts) {
            consent = change_status ? consent | (1u << change_bit) : consent & ~(1u << change_bit);
            changed = 1;
        }
        int mc = g->camp_ch[k], ch = MSG_CHANNEL[mc];
        if (!(consent & (1u << P_MARKETING)) || !(consent & (1u << ch))) continue;
        if (!rng_bernoulli(r, g->P.campaign_reach)) continue;
        double pref = ch == m->preferred ? 1.6 : 1.0;
        ts += (int64_t)rng_below(r, 1800);
        if (!add_event(g, ts, m->num, EV_MESSAGE, ACT_SENT, ch, k)) continue;
        if (rng_bernoulli(r, MSG_BOUNCE[mc])) {
            add_event(g, ts + 30, m->num, EV_MESSAGE, ACT_BOUNCED, ch, k);
            continue;
        }
        ts += 5 + (int64_t)rng_below(r, 55);
        if (!add_event(g, ts, m->num, EV_MESSAGE, ACT_DELIVERED, ch, k)) continue;
        int64_t t2 = ts;
        int engaged = 1;
        if (MSG_OPEN[mc] > 0) {
            engaged = rng_bernoulli(r, fmin(0.95, MSG_OPEN[mc] * f * pref));
            if (engaged) {
                t2 += 60 + (int64_t)rng_exp(r, 1.0 / (6 * 3600.0));
                engaged = add_event(g, t2, m->num, EV_MESSAGE, ACT_OPENED, ch, k);
            }
        }
        if (engaged && rng_bernoulli(r, fmin(0.95, MSG_CLICK[mc] * f * pref))) {
            t2 += 10 + (int64_t)rng_exp(r, 1.0 / 300.0);
            if (add_event(g, t2, m->num, EV_MESSAGE, ACT_CLICKED, ch, k) &&
                rng_bernoulli(r, 0.10 + 0.3 * e)) {
                t2 += 60 + (int64_t)rng_exp(r, 1.0 / 7200.0);
                add_event(g, t2, m->num, EV_MESSAGE, ACT_CONVERTED, ch, k);
            }
        }
        if (rng_bernoulli(r, 0.004 + 0.012 * (1 - e))) {
            int64_t tu = ts + 60 + (int64_t)rng_exp(r, 1.0 / TIME_DAY);
            if (add_event(g, tu, m->num, EV_MESSAGE, ACT_UNSUBSCRIBED, ch, k)) {
                add_event(g, tu + 1, m->num, EV_CONSENT, ch, 0, 0);
                consent &= ~(1u << ch);
            }
        }
    }
}

static void member_events(gen_state *g, rng *r, const gen_member *m, size_t nmo)
{
    const gen_params *P = &g->P;
    uint64_t me = m->num;
    g->nev = 0;

    add_event(g, m->enrolled + 1, me, EV_POINTS, PR_WELCOME, 0, POINT_AMOUNTS[PR_WELCOME]);
    if (m->referrer) {
        if (add_event(g, m->enrolled, m->referrer, EV_REFERRAL, 0, 0, (int64_t)me)) {
            g->c.referrals++;
            add_event(g, m->enrolled + 2, m->referrer, EV_POINTS, PR_REFERRAL, 0,
                      POINT_AMOUNTS[PR_REFERRAL]);
        }
    }
    if (m->has_birth) {
        int y0, mo, d, y1;
        time_civil_from_days(time_day_of(m->enrolled), &y0, &mo, &d);
        time_civil_from_days(time_day_of(g->end), &y1, &mo, &d);
        for (int y = y0; y <= y1; y++) {
            int bd = m->bday;
            int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
            if (m->bmonth == 2 && bd == 29 && !leap) bd = 28;
            int64_t ts = time_days_from_civil(y, (unsigned)m->bmonth, (unsigned)bd) * TIME_DAY +
                         6 * 3600 + (int64_t)rng_below(r, 3600);
            if (ts > m->enrolled)
                add_event(g, ts, me, EV_POINTS, PR_BIRTHDAY, 0, POINT_AMOUNTS[PR_BIRTHDAY]);
        }
    }

    /* at most one consent change after enrolment */
    int64_t change_ts = -1;
    int change_bit = 0, change_status = 0;
    if (rng_bernoulli(r, P->consent_change_share)) {
        static const double KIND_W[6] = {0.40, 0.20, 0.15, 0.10, 0.08, 0.07};
        static const int KIND_BIT[6] = {CH_SMS,  CH_EMAIL,    CH_PUSH,
                                        CH_PUSH, P_PROFILING, P_MARKETING};
        static const int KIND_STATUS[6] = {0, 0, 1, 0, 0, 0};
        int kind = pick_w(r, KIND_W, 6);
        change_ts = uniform_after(g, r, m->enrolled);
        change_bit = KIND_BIT[kind];
        change_status = KIND_STATUS[kind];
        if (!add_event(g, change_ts, me, EV_CONSENT, change_bit, change_status, 0)) change_ts = -1;
    }
    member_messages(g, r, m, m->consent, change_ts, change_bit, change_status);

    /* redemptions after orders, kept within half of the points the member can have */
    int64_t avail = POINT_AMOUNTS[PR_WELCOME], redeemed = 0;
    for (size_t j = 0; j < nmo; j++) {
        const gen_order *o = &g->ord[j];
        avail += (int64_t)((double)(o->amount - o->returned) / 100.0 * P->points_per_unit);
        if (!rng_bernoulli(r, 0.1 + 0.3 * m->engagement)) continue;
        int n = 0;
        while (n < NREWARD && REWARDS[n].points * 2 <= avail - redeemed)
            n++;
        if (n == 0) continue;
        int rw = (int)rng_below(r, (uint64_t)n);
        if (add_event(g, o->ts + 30 + (int64_t)rng_below(r, 900), me, EV_REDEMPTION, rw, 0,
                      REWARDS[rw].points))
            redeemed += REWARDS[rw].points;
    }

    /* views: some just before an order of one of its SKUs, the rest at random */
    uint64_t nviews = rng_poisson(r, P->views_base + P->views_per_order * (double)nmo);
    if (nviews > 40) nviews = 40;
    for (uint64_t k = 0; k < nviews; k++) {
        if (nmo > 0 && rng_bernoulli(r, 0.5)) {
            const gen_order *o = &g->ord[rng_below(r, nmo)];
            const gen_line *l = &g->lines[o->line0 + rng_below(r, o->nlines)];
            int64_t ts = o->ts - 600 - (int64_t)rng_below(r, 2 * TIME_DAY);
            if (ts > m->enrolled) add_event(g, ts, me, EV_VIEW, 0, 0, l->sku);
        } else {
            add_event(g, uniform_after(g, r, m->enrolled), me, EV_VIEW, 0, 0, member_sku(g, r, m));
        }
    }

    if (rng_bernoulli(r, P->survey_share)) {
        int cat = rng_bernoulli(r, 0.8) ? m->fav[0] : pick_cum(r, g->cat_cum, NCAT);
        static const double SAT_W[10] = {1, 1, 2, 3, 5, 8, 14, 20, 18, 10};
        int sat = 1 + pick_w(r, SAT_W, 10);
        int who_for = m->household >= 3 ? (rng_bernoulli(r, 0.6) ? 1 : 0) : (int)rng_below(r, 3);
        add_event(g, uniform_after(g, r, m->enrolled), me, EV_SURVEY, sat, who_for, cat);
    }
    if (rng_bernoulli(r, 0.08 + 0.1 * m->engagement))
        add_event(g, uniform_after(g, r, m->enrolled), me, EV_POINTS, PR_REVIEW, 0,
                  POINT_AMOUNTS[PR_REVIEW]);
    if (rng_bernoulli(r, 0.02))
        add_event(g, uniform_after(g, r, m->enrolled), me, EV_POINTS, PR_GOODWILL, 0,
                  POINT_AMOUNTS[PR_GOODWILL]);
    if (rng_bernoulli(r, 0.01))
        add_event(g, uniform_after(g, r, m->enrolled + 3600), me, EV_POINTS, PR_CORRECTION, 0,
                  POINT_AMOUNTS[PR_CORRECTION]);

    uint64_t ncustom = rng_poisson(r, P->custom_mean);
    int app_user = m->signup == SIGNUP_APP || (m->consent & (1u << CH_APP));
    for (uint64_t k = 0; k < ncustom; k++) {
        double u = rng_double(r);
        int64_t ts = uniform_after(g, r, m->enrolled);
        if (app_user && u < 0.6)
            add_event(g, ts, me, EV_CUSTOM, CU_APP_OPEN, 0, (int64_t)rng_below(r, 2));
        else if (u < 0.8)
            add_event(g, ts, me, EV_CUSTOM, CU_WISHLIST_ADD, 0, member_sku(g, r, m));
        else
            add_event(g, ts, me, EV_CUSTOM, CU_STORE_VISIT, 0, m->home_store);
    }

    if (g->nev > 1) qsort(g->ev, g->nev, sizeof *g->ev, cmp_event);
}

static void write_event(gen_state *g, const gen_event *e)
{
    char *p = gf_begin(&g->events);
    p = puts0(p, "{\"event_id\":\"");
    p = put_id(p, 'E', g->next_event++, 9);
    p = puts0(p, "\",\"type\":\"");
    p = puts0(p, EVENT_TYPES[e->type]);
    p = puts0(p, "\",\"member_id\":\"");
    p = put_id(p, 'M', e->who, g->id_width);
    p = puts0(p, "\",\"ts\":\"");
    p = put_ts(p, e->ts);
    p = puts0(p, "\",");
    switch (e->type) {
    case EV_MESSAGE:
        p = puts0(p, "\"campaign_id\":\"CMP");
        p = put_id(p, '-', (uint64_t)e->n + 1, 4);
        p = puts0(p, "\",\"channel\":\"");
        p = puts0(p, CONSENT_NAMES[e->sub2]);
        p = puts0(p, "\",\"action\":\"");
        p = puts0(p, ACTIONS[e->sub]);
        *p++ = '"';
        break;
    case EV_VIEW: {
        const gen_sku *s = &g->skus[e->n];
        p = puts0(p, "\"sku\":\"");
        p = put(p, s->id, s->id_len);
        p = puts0(p, "\",\"category\":\"");
        p = puts0(p, CATEGORIES[s->cat].name);
        *p++ = '"';
        break;
    }
    case EV_SURVEY:
        p = puts0(p, "\"answers\":{\"favorite_category\":\"");
        p = puts0(p, CATEGORIES[e->n].name);
        p = puts0(p, "\",\"satisfaction\":");
        p = put_u64(p, e->sub);
        p = puts0(p, ",\"shopping_for\":\"");
        p = puts0(p, SHOPPING_FOR[e->sub2]);
        p = puts0(p, "\"}");
        break;
    case EV_REFERRAL:
        p = puts0(p, "\"referred_member_id\":\"");
        p = put_id(p, 'M', (uint64_t)e->n, g->id_width);
        *p++ = '"';
        break;
    case EV_REDEMPTION:
        p = puts0(p, "\"reward_id\":\"");
        p = puts0(p, REWARDS[e->sub].id);
        p = puts0(p, "\",\"points\":");
        p = put_i64(p, e->n);
        break;
    case EV_POINTS:
        p = puts0(p, "\"points\":");
        p = put_i64(p, e->n);
        p = puts0(p, ",\"reason\":\"");
        p = puts0(p, POINT_REASONS[e->sub]);
        *p++ = '"';
        break;
    case EV_CONSENT:
        p = puts0(p, e->sub < NCHANNEL ? "\"channel\":\"" : "\"purpose\":\"");
        p = puts0(p, CONSENT_NAMES[e->sub]);
        p = puts0(p, "\",\"status\":\"");
        p = puts0(p, e->sub2 ? "granted" : "denied");
        *p++ = '"';
        break;
    default: /* EV_CUSTOM */
        p = puts0(p, "\"name\":\"");
        p = puts0(p, CUSTOM_NAMES[e->sub]);
        p = puts0(p, "\",\"properties\":{");
        if (e->sub == CU_APP_OPEN) {
            p = puts0(p, e->n ? "\"os\":\"android\"" : "\"os\":\"ios\"");
        } else if (e->sub == CU_WISHLIST_ADD) {
            p = puts0(p, "\"sku\":\"");
            p = put(p, g->skus[e->n].id, g->skus[e->n].id_len);
            *p++ = '"';
        } else {
            p = puts0(p, "\"store\":\"");
            p = put_id(p, 'S', (uint64_t)e->n, 3);
            *p++ = '"';
        }
        *p++ = '}';
        break;
    }
    *p++ = '}';
    *p++ = '\n';
    gf_end(&g->events, p);
    g->c.events++;
    g->c.ev_type[e->type]++;
}

/* ---- params.json ------------------------------------------------------------------- */

static int write_params(gen_state *g, patron_error *err)
{
    char path[4096];
    int n = snprintf(path, sizeof path, "%s/params.json", g->o->out);
    if (n < 0 || (size_t)n >= sizeof path)
        return err_set(err, PATRON_EUSAGE, "output path '%s' is too long", g->o->out);
    FILE *f = fopen(path, "wb");
    if (!f) return err_set(err, PATRON_EIO, "cannot create '%s': %s", path, strerror(errno));
    const gen_params *P = &g->P;
    const gen_counts *c = &g->c;
    char start[TIME_FMT_LEN], end[TIME_FMT_LEN];
    time_format(g->start, start);
    time_format(g->end, end);
    double members = c->members ? (double)c->members : 1;
    double orders = (double)(c->member_orders + c->guest_orders);
    double log_mean = orders > 0 ? c->sum_log_basket / orders : 0.0;
    double log_var = orders > 0 ? c->sum_log_basket2 / orders - log_mean * log_mean : 0.0;
    double log_sd = log_var > 0 ? sqrt(log_var) : 0.0;
    fprintf(f,
            "{\n"
            "  \"generator\": \"patron generate\",\n"
            "  \"format_version\": 1,\n"
            "  \"seed\": %llu,\n"
            "  \"members\": %llu,\n"
            "  \"start\": \"%s\",\n"
            "  \"end\": \"%s\",\n"
            "  \"now\": \"%s\",\n"
            "  \"bad_rows\": %.10g,\n"
            "  \"row_order\": \"per_member\",\n"
            "  \"time_unit\": \"day\",\n"
            "  \"r\": %.10g,\n"
            "  \"alpha\": %.10g,\n"
            "  \"a\": %.10g,\n"
            "  \"b\": %.10g,\n"
            "  \"never_buy_share\": %.10g,\n"
            "  \"first_purchase_at_signup\": %.10g,\n"
            "  \"first_purchase_delay_days\": %.10g,\n"
            "  \"launch_share\": %.10g,\n"
            "  \"launch_days\": %.10g,\n"
            "  \"basket_mu\": %.10g,\n"
            "  \"basket_sigma\": %.10g,\n"
            "  \"member_spend_sigma\": %.10g,\n"
            "  \"items_per_order_mean\": %.10g,\n"
            "  \"mean_item_value\": %.10g,\n"
            "  \"favourite_share\": %.10g,\n"
            "  \"zipf_s\": %.10g,\n"
            "  \"skus\": %u,\n"
            "  \"categories\": %d,\n"
            "  \"stores\": %u,\n"
            "  \"return_rate\": %.10g,\n"
            "  \"return_delay_days\": %.10g,\n"
            "  \"return_item_share\": %.10g,\n"
            "  \"guest_share\": %.10g,\n"
            "  \"campaigns\": %d,\n"
            "  \"campaign_reach\": %.10g,\n"
            "  \"referred_share\": %.10g,\n"
            "  \"survey_share\": %.10g,\n"
            "  \"consent_change_share\": %.10g,\n"
            "  \"points_per_currency_unit_assumed\": %.10g,\n",
            (unsigned long long)g->o->seed, (unsigned long long)g->o->members, start, end, end,
            g->o->bad_rows, P->r, P->alpha, P->a, P->b, P->never_buy, P->first_at_signup,
            P->first_delay_days, P->launch_share, P->launch_days, g->basket_mu, P->basket_sigma,
            P->member_spend_sigma, P->items_per_order, g->mean_item_value, P->favourite_share,
            P->zipf_s, g->nskus, NCAT, g->nstores, P->return_rate, P->return_delay_days,
            P->return_item_share, P->guest_share, g->ncampaigns, P->campaign_reach,
            P->referred_share, P->survey_share, P->consent_change_share, P->points_per_unit);
    fprintf(f,
            "  \"counts\": {\n"
            "    \"members\": %llu,\n"
            "    \"members_with_orders\": %llu,\n"
            "    \"orders\": %llu,\n"
            "    \"member_orders\": %llu,\n"
            "    \"guest_orders\": %llu,\n"
            "    \"line_items\": %llu,\n"
            "    \"returns\": %llu,\n"
            "    \"return_items\": %llu,\n"
            "    \"order_rows\": %llu,\n"
            "    \"revenue\": %.2f,\n"
            "    \"returned\": %.2f,\n"
            "    \"expected_member_orders\": %.3f,\n"
            "    \"orders_per_member\": %.6g,\n"
            "    \"items_per_order\": %.6g,\n"
            "    \"basket_log_mean\": %.6g,\n"
            "    \"basket_log_sd\": %.6g,\n"
            "    \"return_share\": %.6g,\n"
            "    \"guest_share\": %.6g,\n"
            "    \"mean_lambda\": %.6g,\n"
            "    \"mean_p\": %.6g,\n"
            "    \"referrals\": %llu,\n"
            "    \"events\": %llu,\n"
            "    \"events_by_type\": {",
            (unsigned long long)c->members, (unsigned long long)c->members_with_orders,
            (unsigned long long)(c->member_orders + c->guest_orders),
            (unsigned long long)c->member_orders, (unsigned long long)c->guest_orders,
            (unsigned long long)c->line_items, (unsigned long long)c->returns,
            (unsigned long long)c->return_items,
            (unsigned long long)(c->line_items + c->return_items), (double)c->revenue / 100.0,
            (double)c->returned / 100.0, c->expected_member_orders,
            (double)c->member_orders / members, orders > 0 ? (double)c->line_items / orders : 0.0,
            log_mean, log_sd, orders > 0 ? (double)c->returns / orders : 0.0,
            orders > 0 ? (double)c->guest_orders / orders : 0.0, c->sum_lambda / members,
            c->sum_p / members, (unsigned long long)c->referrals, (unsigned long long)c->events);
    for (int t = 0; t < NEVTYPE; t++)
        fprintf(f, "%s\"%s\": %llu", t ? ", " : "", EVENT_TYPES[t],
                (unsigned long long)c->ev_type[t]);
    fprintf(f,
            "},\n"
            "    \"bad_member_rows\": %llu,\n"
            "    \"bad_order_rows\": %llu,\n"
            "    \"bad_orders\": %llu\n"
            "  }\n"
            "}\n",
            (unsigned long long)c->bad_member_rows, (unsigned long long)c->bad_order_rows,
            (unsigned long long)c->bad_orders);
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) return err_set(err, PATRON_EIO, "cannot write '%s'", path);
    return PATRON_OK;
}

/* ---- driver ------------------------------------------------------------------------ */

void gen_opts_init(gen_opts *o)
{
    memset(o, 0, sizeof *o);
    o->members = 10000;
    o->seed = 1;
    o->out = ".";
    o->start = time_days_from_civil(2023, 1, 1) * TIME_DAY;
    o->end = time_days_from_civil(2024, 12, 31) * TIME_DAY + TIME_DAY - 1;
    o->bad_rows = 0;
}

static void release(gen_state *g)
{
    gf_close(&g->members);
    gf_close(&g->orders);
    gf_close(&g->events);
    mem_free(g->skus);
    mem_free(g->rank_sku);
    mem_free(g->ord);
    mem_free(g->lines);
    mem_free(g->ev);
}

static const char *const MEMBERS_HEADER =
    "member_id,enrolled_at,email,phone,first_name,last_name,birth_date,gender,country,region,"
    "city,postal_code,language,signup_channel,preferred_channel,referred_by,interests,"
    "consent_email,consent_sms,consent_push,consent_app,consent_web,consent_social,"
    "consent_mail,consent_marketing,consent_profiling,consent_personalization,"
    "consent_updated_at,loyalty_card,household_size\n";
static const char *const ORDERS_HEADER =
    "order_id,member_id,ts,sku,qty,price,category,brand,channel,store,original_order_id\n";

int gen_run(const gen_opts *o, patron_error *err)
{
    if (!o || !o->out || !o->out[0]) return err_set(err, PATRON_EUSAGE, "no output directory");
    if (o->start >= o->end)
        return err_set(err, PATRON_EUSAGE, "the start of the window must be before its end");
    if (!(o->bad_rows >= 0 && o->bad_rows <= 1))
        return err_set(err, PATRON_EUSAGE, "the bad-row rate must be between 0 and 1");

    gen_state g;
    memset(&g, 0, sizeof g);
    g.o = o;
    g.P = DEFAULT_PARAMS;
    g.start = o->start;
    g.end = o->end;
    g.id_width = 7;
    for (uint64_t t = o->members; t >= 10000000; t /= 10)
        g.id_width++;
    g.next_order = g.next_return = g.next_event = 1;
    rng_seed_stream(&g.bad, o->seed, STREAM_BAD, 0);

    int rc = make_dirs(o->out, err);
    if (rc == PATRON_OK) rc = setup_catalog(&g, err);
    if (rc == PATRON_OK) {
        setup_tables(&g);
        setup_campaigns(&g);
        rc = gf_open(&g.members, o->out, "members.csv", err);
    }
    if (rc == PATRON_OK) rc = gf_open(&g.orders, o->out, "orders.csv", err);
    if (rc == PATRON_OK) rc = gf_open(&g.events, o->out, "events.jsonl", err);
    if (rc != PATRON_OK) {
        release(&g);
        return rc;
    }
    char *p = gf_begin(&g.members);
    gf_end(&g.members, puts0(p, MEMBERS_HEADER));
    p = gf_begin(&g.orders);
    gf_end(&g.orders, puts0(p, ORDERS_HEADER));

    for (uint64_t i = 1; i <= o->members; i++) {
        rng r;
        gen_member m;
        rng_seed_stream(&r, o->seed, STREAM_MEMBER, i);
        memset(&m, 0, sizeof m);
        m.num = i;
        draw_member(&g, &r, &m);
        write_member(&g, &r, &m);
        size_t nmo = member_orders(&g, &r, &m);
        write_orders(&g, &r, &m, nmo);
        member_events(&g, &r, &m, nmo);
        for (size_t k = 0; k < g.nev; k++)
            write_event(&g, &g.ev[k]);
        g.c.members++;
        if (g.oom) {
            release(&g);
            return err_set(err, PATRON_ENOMEM, "out of memory");
        }
        if ((i & 0x3fff) == 0) {
            if (g.members.failed || g.orders.failed || g.events.failed) break;
            if (o->progress) o->progress(o->progress_ctx, i, o->members);
        }
    }
    int e1 = gf_close(&g.members), e2 = gf_close(&g.orders), e3 = gf_close(&g.events);
    if (e1 || e2 || e3) {
        const char *name = e1 ? "members.csv" : e2 ? "orders.csv" : "events.jsonl";
        rc = err_set(err, PATRON_EIO, "cannot write '%s/%s': %s", o->out, name,
                     strerror(e1   ? e1
                              : e2 ? e2
                                   : e3));
        release(&g);
        return rc;
    }
    rc = write_params(&g, err);
    if (rc == PATRON_OK && o->progress) o->progress(o->progress_ctx, o->members, o->members);
    release(&g);
    return rc;
}
