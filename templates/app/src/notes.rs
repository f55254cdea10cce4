//! Example resource, "notes": each signed-in user's own notes, as a JSON API at `/api/notes` made
//! by the CRUD factory and an htmx page at `/notes` that lists, creates and deletes them without
//! a full page reload. It works on the embedded store and on MongoDB alike.
//!
//! It is also an example of safety: both need a signed-in user (the API answers 401, the page
//! sends visitors to sign in), every read, change and delete is limited to the user's own notes
//! (others' answer 404), and the owner and the word count are written by the server only.
//!
//! The list on `/notes` is live: it follows the user's own SSE channel at `/notes/events`, and a
//! note added on the page is broadcast there at once, so it appears in each of that user's
//! browsers. Every new note is also enriched in the background: the `enrich_note` task counts its
//! words, stores the count and broadcasts the note again, updated in place. Without `REDIS_URL`
//! the task runs inside `serve`; with it, run `cargo run -- worker` as well.
//!
//! To remove it: delete this file, `templates/frontend/notes.html.jinja` and `tests/notes.rs`,
//! and the two lines that mention `notes` in `lib.rs`.

use vibetuner::prelude::*;
use vibetuner::render::Renderer;

/// A note, stored in the `notes` collection.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Note {
    /// The user it belongs to; set by the server.
    pub owner_id: Id,
    /// Title: one line of text.
    pub title: String,
    /// Free text.
    #[serde(default)]
    pub body: String,
    /// Words in title and body, filled in by the `enrich_note` task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub word_count: Option<u32>,
}

/// Longest body kept, in characters.
const MAX_BODY: usize = 10_000;

impl Model for Note {
    const COLLECTION: &'static str = "notes";

    fn indexes() -> Vec<Index> {
        vec![Index::on(["owner_id", "db_insert_dt"])]
    }

    fn validate(&self) -> Result<(), FieldError> {
        if self.title.trim().is_empty() {
            return Err(FieldError::new("title", "is required"));
        }
        if self.title.chars().count() > 200 {
            return Err(FieldError::new("title", "is longer than 200 characters"));
        }
        if self.body.chars().count() > MAX_BODY {
            return Err(FieldError::new("body", "is longer than 10000 characters"));
        }
        Ok(())
    }
}

/// Registers the API, the page, the live updates, the enrichment task and the model on the app.
pub fn register(app: App) -> App {
    app.crud(
        Crud::<Note>::new("/api/notes")
            .owned_by("owner_id")
            .read_only(["word_count"])
            .sortable(["title", "db_insert_dt"])
            .searchable(["title", "body"])
            .default_sort("-db_insert_dt")
            .post_create(|ctx, note| async move {
                ctx.jobs().enqueue(ENRICH, &note.id).await?;
                Ok(())
            })
            .post_delete(|ctx, note| async move { retract(&ctx, note.owner_id, note.id).await }),
    )
    .named_route("notes_page", "/notes", get(page).post(create))
    .named_route("notes_item", "/notes/{id}", delete(remove))
    .sse_for("/notes/events", |user: CurrentUser| async move {
        Ok(channel(user.record_id()?))
    })
    .task(Task::new(ENRICH, enrich))
}

/// The task that counts a note's words and broadcasts it; its argument is the note's id.
const ENRICH: TaskKey<Id> = TaskKey::new("enrich_note");

/// The SSE channel of one user's notes.
fn channel(owner: Id) -> String {
    format!("notes:{owner}")
}

/// The list item of a note as every `/notes` page shows it (rendered without a request, since
/// it goes to each of the owner's browsers).
fn note_item(renderer: &Renderer, note: &Record<Note>) -> Result<String> {
    renderer.render_block("notes.html.jinja", "note_item", None, context! { note })
}

/// The key of a note's events: a later event with the same key replaces the earlier ones in
/// the replay that reconnecting pages receive.
fn event_key(note: Id) -> String {
    format!("note:{note}")
}

/// Sends the rendered note to its owner's `/notes` pages.
async fn publish(ctx: &AppContext, note: &Record<Note>) -> Result<()> {
    let html = note_item(ctx.renderer(), note)?;
    ctx.broadcaster()
        .broadcast_keyed(
            &channel(note.owner_id),
            &event_key(note.id),
            "message",
            html,
        )
        .await?;
    Ok(())
}

/// Tells the owner's pages a note is gone (pages ignore the `deleted` event; it keeps the note
/// out of the replay).
async fn retract(ctx: &AppContext, owner: Id, note: Id) -> Result<()> {
    ctx.broadcaster()
        .broadcast_keyed(
            &channel(owner),
            &event_key(note),
            "deleted",
            note.to_string(),
        )
        .await?;
    Ok(())
}

/// Stores the note's word count and sends the updated note to its owner's pages. The count is
/// written only if nobody changed the note since it was read: an edit made meanwhile is kept,
/// and the count is made again from it.
async fn enrich(ctx: TaskContext, id: Id) -> Result<()> {
    let notes = ctx.store().models::<Note>();
    loop {
        let Some(note) = notes.get(id).await? else {
            return Ok(());
        };
        let words = note.title.split_whitespace().count() + note.body.split_whitespace().count();
        let count = Update::set(vibetuner::store::bson::doc! { "word_count": words as u32 });
        if let Some(note) = notes.update_if_unchanged(&note, count).await? {
            return publish(&ctx, &note).await;
        }
    }
}

/// The user's 50 newest notes.
async fn latest(store: &Store, owner: Id) -> Result<Vec<Record<Note>>> {
    let query = Filter::eq("owner_id", owner)
        .sort("db_insert_dt", Order::Desc)
        .limit(50);
    Ok(store.models::<Note>().find(&query).await?)
}

/// `GET /notes`: the page, or only the notes section for htmx.
async fn page(user: CurrentUser, render: Render, store: Store) -> Result<Html<String>> {
    let notes = latest(&store, user.record_id()?).await?;
    render.page_or_block("notes.html.jinja", "notes_section", context! { notes })
}

/// Fields of the "new note" form.
#[derive(Deserialize)]
pub struct NoteForm {
    title: String,
    #[serde(default)]
    body: String,
}

/// `POST /notes`: stores the note, broadcasts it to the user's `/notes` pages, enqueues its
/// enrichment and answers with an empty form (422 with the form and its error when the note is
/// invalid). Without htmx, redirects back to the page.
async fn create(
    user: CurrentUser,
    ctx: AppContext,
    render: Render,
    Form(form): Form<NoteForm>,
) -> Result<Response> {
    let note = Note {
        owner_id: user.record_id()?,
        title: form.title.trim().to_owned(),
        body: form.body.trim().to_owned(),
        word_count: None,
    };
    if let Err(e) = note.validate() {
        let error = format!("The {} {}.", e.field, e.message);
        let html = render.block(
            "notes.html.jinja",
            "note_form",
            context! { error, form => note },
        )?;
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, html).into_response());
    }
    let note = ctx.store().models::<Note>().insert(note).await?;
    publish(&ctx, &note).await?;
    ctx.jobs().enqueue(ENRICH, &note.id).await?;
    if !render.request().htmx {
        return Ok(Redirect::to("/notes").into_response());
    }
    Ok(render
        .block("notes.html.jinja", "note_form", ())?
        .into_response())
}

/// `DELETE /notes/{id}`: removes the user's note; htmx swaps its list item for the empty answer.
/// Another user's note is "not found", like a missing one.
async fn remove(
    user: CurrentUser,
    ctx: AppContext,
    Path(id): Path<Id>,
) -> Result<Html<&'static str>> {
    let owner = user.record_id()?;
    let mine = Filter::eq("_id", id).and(Filter::eq("owner_id", owner));
    if ctx.store().models::<Note>().delete_many(mine).await? == 1 {
        retract(&ctx, owner, id).await?;
        Ok(Html(""))
    } else {
        Err(Error::not_found())
    }
}
