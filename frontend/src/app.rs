//! The components. They only read [`Session`](crate::model::Session) through
//! signals and call [`Ctrl`]; no rule is decided here.
//!
//! Every control carries an `aria-label` and a stable `data-test` attribute
//! for the browser test.

use leptos::prelude::*;
use shared::{ActionType, Game, Item};

use crate::art;
use crate::ctrl::{ButtonNote, Ctrl};
use crate::invite;
use crate::model::{validate_name, ActionButton, Connection};

/// The game page: header with the connection indicator, then the join form
/// or the nation view. The other pages are the second build's
/// ([`ExtraApp`](crate::extra::ExtraApp)); the bridge serves its HTML for
/// their URLs, and if this page is loaded for one anyway (a static server),
/// it hands over to `/extra/` with the same query.
#[component]
pub fn App() -> impl IntoView {
    if crate::net::page().is_extra() {
        crate::net::replace_with(&format!("/extra/{}", crate::net::search()));
        return ().into_any();
    }
    let ctrl = Ctrl::new();
    ctrl.start();
    let show_nation = move || {
        ctrl.session
            .with(|s| s.player_id.is_some() && (s.confirmed.is_none() || s.joined()))
            && ctrl.token.with(Option::is_some)
    };
    view! {
        <header class="top">
            <h1>"Build a Nation"</h1>
            <a class="nav-link" href="/?view=analytics" data-test="to-analytics">
                "Analytics"
            </a>
            <crate::arena::ArenaEntry />
            <ConnectionIndicator conn=ctrl.conn />
        </header>
        <main>
            <div class="play">
                <Notice ctrl=ctrl />
                <Show when=show_nation fallback=move || view! { <JoinForm ctrl=ctrl /> }>
                    <NationView ctrl=ctrl />
                </Show>
            </div>
            <aside class="side" aria-label="This game">
                <Leaderboard ctrl=ctrl />
                <crate::boards::GlobalBoards ctrl=ctrl />
                <Show when=show_nation>
                    <FeedView ctrl=ctrl />
                </Show>
                <Invite ctrl=ctrl />
            </aside>
        </main>
    }
    .into_any()
}

/// The live-connection dot and words.
#[component]
pub fn ConnectionIndicator(
    /// The WebSocket's state.
    conn: RwSignal<Connection>,
) -> impl IntoView {
    view! {
        <p
            class=move || format!("conn {}", conn.get().css())
            data-test="conn"
            data-state=move || conn.get().css()
            role="status"
            aria-label=move || format!("Connection: {}", conn.get().label())
        >
            <span class="dot" aria-hidden="true"></span>
            {move || conn.get().label()}
        </p>
    }
}

/// The status line: the last rejection or error, readable and dismissable.
#[component]
pub fn Notice(
    /// The app's state.
    ctrl: Ctrl,
) -> impl IntoView {
    view! {
        <div class="notice-area" aria-live="polite">
            {move || {
                ctrl.notice
                    .get()
                    .map(|n| {
                        view! {
                            <p
                                class=if n.error { "notice error" } else { "notice" }
                                data-test="notice"
                                role="alert"
                            >
                                <span>{n.text}</span>
                                <button
                                    class="dismiss"
                                    aria-label="Dismiss message"
                                    data-test="dismiss"
                                    on:click=move |_| ctrl.notice.set(None)
                                >
                                    "×"
                                </button>
                            </p>
                        }
                    })
            }}
        </div>
    }
}

/// Choose a game (the default preselected) and a nation name.
#[component]
pub fn JoinForm(
    /// The app's state.
    ctrl: Ctrl,
) -> impl IntoView {
    let game = RwSignal::new(ctrl.default_game.get_untracked().to_string());
    // The default may arrive after the form is first drawn.
    Effect::new(move |_| game.set(ctrl.default_game.get().to_string()));
    let name = RwSignal::new(String::new());
    let problem = RwSignal::new(None::<String>);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let Ok(game_id) = game.get_untracked().trim().parse::<u64>() else {
            problem.set(Some("The game is a number, like 1.".to_string()));
            return;
        };
        if shared::GameKind::of(game_id) == shared::GameKind::Arena {
            // An arena's number: its own page.
            crate::net::go_to(&format!("/?arena={game_id}"));
            return;
        }
        match validate_name(&name.get_untracked()) {
            Ok(n) => {
                problem.set(None);
                ctrl.join(game_id, n);
            }
            Err(e) => problem.set(Some(e)),
        }
    };
    view! {
        <form class="card join" on:submit=submit data-test="join-form">
            <div class="hero" aria-hidden="true">
                {[(Item::Sword, 3), (Item::Shield, 4), (Item::Horse, 2), (Item::Knife, 5)]
                    .into_iter()
                    .map(|(item, level)| view! { <span class="pic" inner_html=art::item_svg(item, level)></span> })
                    .collect_view()}
            </div>
            <h2>"Found your nation"</h2>
            <p class="pitch">"Buy swords, shields, horses and knives, upgrade them, and out-power the other nations."</p>
            <label for="game-input">"Game"</label>
            <input
                id="game-input"
                data-test="game-input"
                aria-label="Game number"
                type="number"
                inputmode="numeric"
                min="0"
                prop:value=move || game.get()
                on:input=move |ev| game.set(event_target_value(&ev))
            />
            <label for="name-input">"Nation name"</label>
            <input
                id="name-input"
                data-test="name-input"
                aria-label="Nation name"
                type="text"
                maxlength="32"
                autocomplete="off"
                placeholder="Atlantis"
                prop:value=move || name.get()
                on:input=move |ev| name.set(event_target_value(&ev))
            />
            {move || problem.get().map(|p| view! { <p class="reason" role="alert">{p}</p> })}
            <button
                type="submit"
                class="primary"
                data-test="join-button"
                aria-label="Join the game"
                disabled=move || ctrl.joining.get()
            >
                {move || if ctrl.joining.get() { "Joining…" } else { "Join" }}
            </button>
        </form>
    }
}

/// Our nation: gold, power, items and the action buttons.
#[component]
pub fn NationView(
    /// The app's state.
    ctrl: Ctrl,
) -> impl IntoView {
    let predicted = Memo::new(move |_| ctrl.session.with(|s| s.predicted()));
    let me = move || {
        ctrl.session
            .with(|s| s.player_id.clone().unwrap_or_default())
    };
    let nation = move || predicted.with(|g: &Game| g.state.players.get(&me()).cloned());
    let pending = move || ctrl.session.with(|s| !s.pending.is_empty());
    let gold = move || nation().map(|n| n.gold.to_string()).unwrap_or("…".into());
    let power = move || nation().map(|n| n.power.to_string()).unwrap_or("…".into());
    let level = move |item: Item| nation().map(|n| n.items.level(item)).unwrap_or(0);
    let buttons = Memo::new(move |_| ctrl.session.with(|s| s.buttons()));
    // The gold counter's change, shown as a chip that floats away; `seq`
    // keys a fresh element per change so its animation starts again.
    let gold_now = Memo::new(move |_| nation().map(|n| n.gold));
    let delta = RwSignal::new(None::<(i128, u64)>);
    let previous = StoredValue::new(None::<u64>);
    Effect::new(move |_| {
        let now = gold_now.get();
        if let (Some(old), Some(new)) = (previous.get_value(), now) {
            if old != new {
                delta.update(|d| {
                    let seq = d.map_or(0, |(_, s)| s) + 1;
                    *d = Some((i128::from(new) - i128::from(old), seq));
                });
            }
        }
        previous.set_value(now);
    });
    view! {
        <section
            class="card nation"
            data-test="nation"
            data-pending=move || pending().to_string()
            data-version=move || {
                ctrl.session.with(|s| s.version().map(|v| v.to_string()).unwrap_or_default())
            }
            aria-busy=move || pending().to_string()
        >
            <div class="nation-head">
                <h2 data-test="nation-name">
                    {move || nation().map(|n| n.name).unwrap_or_else(|| "Joining…".into())}
                </h2>
                <button
                    class="link"
                    data-test="leave"
                    aria-label="Leave this nation on this device"
                    on:click=move |_| ctrl.leave()
                >
                    "Leave"
                </button>
            </div>
            <dl class="stats">
                <div class="gold-stat" class:pending=pending>
                    <dt>
                        <span class="icon" inner_html=art::coin_svg()></span>
                        "Gold"
                    </dt>
                    <dd>
                        <span data-test="gold" aria-label="Gold">{gold}</span>
                        <For
                            each=move || delta.get().into_iter()
                            key=|(_, seq)| *seq
                            let:d
                        >
                            <span
                                class=if d.0 < 0 { "delta down" } else { "delta up" }
                                data-test="gold-delta"
                                aria-hidden="true"
                            >
                                {if d.0 < 0 { format!("−{}", -d.0) } else { format!("+{}", d.0) }}
                            </span>
                        </For>
                    </dd>
                </div>
                <div class:pending=pending>
                    <dt>"Power"</dt>
                    <dd data-test="power" aria-label="Power">{power}</dd>
                </div>
            </dl>
            <ul class="items" aria-label="Items">
                {Item::ALL
                    .into_iter()
                    .map(|item| {
                        view! {
                            <li class:owned=move || { level(item) > 0 }>
                                <span
                                    class="pic"
                                    data-test=format!("art-{item}")
                                    data-level=move || level(item).to_string()
                                    inner_html=move || art::item_svg(item, level(item))
                                ></span>
                                <span class="item-name">{item.as_str()}</span>
                                <span
                                    class="level"
                                    data-test=format!("item-{item}")
                                    aria-label=move || format!("{item} level {}", level(item))
                                >
                                    {move || match level(item) {
                                        0 => "None".to_string(),
                                        l => format!("Lv {l}"),
                                    }}
                                </span>
                            </li>
                        }
                    })
                    .collect_view()}
            </ul>
            <div class="actions">
                {ActionType::ALL
                    .into_iter()
                    .filter(|a| *a != ActionType::Join)
                    .map(|action| view! { <ActionButtonView ctrl=ctrl action=action buttons=buttons /> })
                    .collect_view()}
            </div>
        </section>
    }
}

/// One action: its label and cost, disabled with the reason when the rules
/// say no, busy while a click is pending.
#[component]
pub fn ActionButtonView(
    /// The app's state.
    ctrl: Ctrl,
    /// Which action this button performs.
    action: ActionType,
    /// Every button's current description, from the session.
    buttons: Memo<Vec<ActionButton>>,
) -> impl IntoView {
    let b = move || {
        buttons.with(|bs| {
            bs.iter()
                .find(|b| b.action == action)
                .cloned()
                .expect("one button per action")
        })
    };
    let reason_id = format!("reason-{action}");
    // The picture on the button: what the click gets.
    let level_now = move || {
        ctrl.session.with(|s| {
            let me = s.player_id.clone().unwrap_or_default();
            let item = action.purchase().or(action.upgrade())?;
            let game = s.predicted();
            let have = game
                .state
                .players
                .get(&me)
                .map_or(0, |n| n.items.level(item));
            Some((item, have))
        })
    };
    let picture = move || match (action.purchase(), level_now()) {
        (Some(item), _) => art::item_svg(item, 1),
        (None, Some((item, have))) => art::item_svg(item, have.saturating_add(1).max(2)),
        _ => art::coin_svg(),
    };
    let note = move || {
        ctrl.notes
            .with(|n| n.iter().find(|(a, _)| *a == action).map(|(_, n)| n.clone()))
    };
    view! {
        <div class="action">
            <button
                data-test=format!("action-{action}")
                class:pending=move || b().pending
                disabled=move || b().reason.is_some()
                aria-busy=move || b().pending.to_string()
                aria-describedby=reason_id.clone()
                aria-label=move || {
                    // The visible words, in order (WCAG 2.5.3 label in name).
                    let b = b();
                    match b.cost {
                        Some(c) => format!("{} {c} gold", b.label),
                        None => format!("{} free", b.label),
                    }
                }
                on:click=move |_| ctrl.act(action)
            >
                <span class="pic" aria-hidden="true" inner_html=picture></span>
                <span class="label">{move || b().label}</span>
                // A real space: the name read aloud and the visible text agree.
                " "
                <span class="cost">
                    {move || b().cost.map(|c| format!("{c} gold")).unwrap_or_else(|| "free".into())}
                </span>
            </button>
            <small class="reason" id=reason_id data-test=format!("reason-{action}")>
                {move || b().reason.unwrap_or_default()}
            </small>
            {move || match note() {
                Some(ButtonNote::Refused(why)) => {
                    view! {
                        <small class="note refused" role="alert" data-test=format!("refused-{action}")>
                            {why}
                        </small>
                    }
                        .into_any()
                }
                Some(ButtonNote::Done(_)) if !b().pending => {
                    view! {
                        <small class="note done" data-test=format!("done-{action}")>
                            "Done: confirmed by the game"
                        </small>
                    }
                        .into_any()
                }
                _ => ().into_any(),
            }}
        </div>
    }
}

/// The game's ranking at a glance: the top nations and the player's place.
#[component]
pub fn Leaderboard(
    /// The app's state.
    ctrl: Ctrl,
) -> impl IntoView {
    let all = Memo::new(move |_| ctrl.session.with(|s| s.leaderboard()));
    let rows = Memo::new(move |_| all.with(|r| invite::at_a_glance(r)));
    view! {
        <section class="card board" aria-labelledby="board-title">
            <h2 id="board-title">
                "Ranking of game "
                {move || ctrl.session.with(|s| s.game_id)}
            </h2>
            {move || {
                all.with(|r| invite::my_place(r))
                    .map(|p| view! { <p class="place" data-test="my-place">{p}</p> })
            }}
            <ol data-test="leaderboard">
                <For
                    each=move || rows.get()
                    key=|r| (r.player_id.clone(), r.rank, r.power, r.gold, r.name.clone())
                    let:row
                >
                    <li
                        class:me=row.me
                        data-test="leader-row"
                        data-name=row.name.clone()
                        data-power=row.power.to_string()
                    >
                        <span class="rank">{row.rank}</span>
                        <span class="who">
                            {row.name.clone()}
                            {row.me.then(|| view! { <span class="you">" (you)"</span> })}
                        </span>
                        <span class="pow">{format!("{} power", row.power)}</span>
                        <span class="gold">{format!("{} gold", row.gold)}</span>
                    </li>
                </For>
            </ol>
            {move || {
                all.with(Vec::is_empty).then(|| view! { <p class="empty">"No nations yet."</p> })
            }}
        </section>
    }
}

/// What happened in this game lately, newest first; our own lines marked.
#[component]
pub fn FeedView(
    /// The app's state.
    ctrl: Ctrl,
) -> impl IntoView {
    let lines = Memo::new(move |_| ctrl.feed.with(|f| f.lines()));
    view! {
        <section class="card feed" aria-labelledby="feed-title">
            <h2 id="feed-title">"Live feed"</h2>
            <ol data-test="feed" aria-live="polite">
                <For each=move || lines.get() key=|l| l.seq let:line>
                    <li
                        class:mine=line.mine
                        class:refused=line.refused
                        data-test="feed-line"
                        data-mine=line.mine.to_string()
                    >
                        {line.text}
                    </li>
                </For>
            </ol>
            {move || {
                lines
                    .with(Vec::is_empty)
                    .then(|| view! { <p class="empty">"Nothing yet: news of this game shows here."</p> })
            }}
        </section>
    }
}

/// A link to this game for a friend, with a copy button.
#[component]
pub fn Invite(
    /// The app's state.
    ctrl: Ctrl,
) -> impl IntoView {
    let url = move || invite::invite_url(&crate::net::origin(), ctrl.session.with(|s| s.game_id));
    let copied = RwSignal::new(None::<bool>);
    let copy = move |_| {
        let text = url();
        leptos::task::spawn_local(async move {
            copied.set(Some(crate::net::copy_text(&text).await));
        });
    };
    view! {
        <section class="card invite">
            <h2>
                <label for="invite-link">"Invite a friend"</label>
            </h2>
            <div class="invite-row">
                <input
                    id="invite-link"
                    data-test="invite-link"
                    aria-label="Invite link to this game"
                    readonly
                    prop:value=url
                    on:focus=move |ev| {
                        use wasm_bindgen::JsCast;
                        if let Some(i) = ev
                            .target()
                            .and_then(|t| t.dyn_into::<web_sys::HtmlInputElement>().ok())
                        {
                            i.select();
                        }
                    }
                />
                <button data-test="copy-invite" aria-label="Copy the invite link" on:click=copy>
                    {move || match copied.get() {
                        Some(true) => "Copied",
                        Some(false) => "Select and copy",
                        None => "Copy",
                    }}
                </button>
            </div>
        </section>
    }
}
