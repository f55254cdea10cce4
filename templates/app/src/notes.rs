//! Example resource, "notes": a JSON API at `/api/notes` made by the CRUD factory, and an htmx
//! page at `/notes` that lists, creates and deletes notes without a full page reload. It works
//! on the embedded store and on MongoDB alike.
//!
//! The list on `/notes` is live: it follows the `notes` SSE channel at `/notes/events`, and a
//! note added on the page is broadcast there at once, so it appears in every browser (the one
//! that added it too, in the same order as everywhere else). Every new note is also enriched in
//! the background: the `enrich_note` task counts its words, stores the count and broadcasts the
//! note again, updated in place. Without `REDIS_URL` the task runs inside `serve`; with it, run
//! `cargo run -- worker` as well.
//!
//! To remove it: delete this file, `templates/frontend/notes.html.jinja` and `tests/notes.rs`,
//! and the two lines that mention `notes` in `lib.rs`.

use vibetuner::prelude::*;
use vibetuner::render::Renderer;

/// A note, stored in the `notes` collection.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Note {
    /// Short title, required.
    pub title: String,
    /// Free text.
    #[serde(default)]
    pub body: String,
    /// Words in title and body, filled in by the `enrich_note` task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub word_count: Option<u32>,
}

impl Model for Note {
    const COLLECTION: &'static str = "notes";

    fn indexes() -> Vec<Index> {
        vec![Index::on(["db_insert_dt"])]
    }

    fn validate(&self) -> Result<(), FieldError> {
        if self.title.trim().is_empty() {
            return Err(FieldError::new("title", "is required"));
        }
        if self.title.chars().count() > 200 {
            return Err(FieldError::new("title", "is longer than 200 characters"));
        }
        Ok(())
    }
}

/// Registers the API, the page, the live updates, the enrichment task and the model on the app.
pub fn register(app: App) -> App {
    app.crud(
        Crud::<Note>::new("/api/notes")
            .sortable(["title", "db_insert_dt"])
            .searchable(["title", "body"])
            .default_sort("-db_insert_dt")
            .post_create(|ctx, note| async move {
                ctx.jobs().enqueue(ENRICH, &note.id).await?;
                Ok(())
            }),
    )
    .named_route("notes_page", "/notes", get(page).post(create))
    .named_route("notes_item", "/notes/{id}", delete(remove))
    .sse("/notes/events", "notes")
    .task(Task::new(ENRICH, enrich))
}

/// The task that counts a note's words and broadcasts it; its argument is the note's id.
const ENRICH: TaskKey<Id> = TaskKey::new("enrich_note");

/// The list item of a note as every `/notes` page shows it (rendered without a request, since
/// it goes to everyone).
fn note_item(renderer: &Renderer, note: &Record<Note>) -> Result<String> {
    renderer.render_block("notes.html.jinja", "note_item", None, context! { note })
}

/// Stores the note's word count and sends the rendered note to every `/notes` page.
async fn enrich(ctx: TaskContext, id: Id) -> Result<()> {
    let notes = ctx.store().models::<Note>();
    let Some(mut note) = notes.get(id).await? else {
        return Ok(());
    };
    let words = note.title.split_whitespace().count() + note.body.split_whitespace().count();
    note.word_count = Some(words as u32);
    notes.save(&mut note).await?;
    let html = note_item(ctx.renderer(), &note)?;
    ctx.broadcaster().broadcast("notes", "message", html).await?;
    Ok(())
}

/// The 50 newest notes.
async fn latest(store: &Store) -> Result<Vec<Record<Note>>> {
    let query = vibetuner::store::Query::all()
        .sort("db_insert_dt", Order::Desc)
        .limit(50);
    Ok(store.models::<Note>().find(&query).await?)
}

/// `GET /notes`: the page, or only the notes section for htmx.
async fn page(render: Render, store: Store) -> Result<Html<String>> {
    let notes = latest(&store).await?;
    render.page_or_block("notes.html.jinja", "notes_section", context! { notes })
}

/// Fields of the "new note" form.
#[derive(Deserialize)]
pub struct NoteForm {
    title: String,
    #[serde(default)]
    body: String,
}

/// `POST /notes`: stores the note, broadcasts it to every `/notes` page, enqueues its enrichment
/// and answers with an empty form (422 with the form and its error when the note is invalid).
/// Without htmx, redirects back to the page.
async fn create(ctx: AppContext, render: Render, Form(form): Form<NoteForm>) -> Result<Response> {
    let note = Note {
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
    ctx.broadcaster()
        .broadcast("notes", "message", note_item(ctx.renderer(), &note)?)
        .await?;
    ctx.jobs().enqueue(ENRICH, &note.id).await?;
    if !render.request().htmx {
        return Ok(Redirect::to("/notes").into_response());
    }
    Ok(render
        .block("notes.html.jinja", "note_form", ())?
        .into_response())
}

/// `DELETE /notes/{id}`: removes the note; htmx swaps its list item for the empty answer.
async fn remove(store: Store, Path(id): Path<Id>) -> Result<Html<&'static str>> {
    if store.models::<Note>().delete(id).await? {
        Ok(Html(""))
    } else {
        Err(Error::not_found())
    }
}
