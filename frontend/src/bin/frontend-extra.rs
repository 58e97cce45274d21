//! Mounts the arena, analytics and operator pages (the second build, served
//! from `/extra/`); everything else is in the library.

fn main() {
    leptos::mount::mount_to_body(frontend::ExtraApp);
}
