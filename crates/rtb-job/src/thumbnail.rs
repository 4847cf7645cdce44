//! The job's picture: when the outputs are uploaded, the runner picks the job's main image in
//! OUTPUT_SCRATCH (the newest of the largest image files, by extension), records its size and
//! pixels in `result.json`, and writes a small PNG of it (~320 px wide; HDR and EXR
//! tone-mapped) into the job's records. The batch's page embeds that PNG: nobody downloads a
//! full render to see how a batch went.
//!
//! A job that wrote no image, an empty one, one without pixels or one that cannot be decoded
//! (renderers are known to exit 0 with a truncated file) gets a flag the summary and the page
//! show.

use std::path::Path;
use std::time::{Duration, SystemTime};

use image::{DynamicImage, ImageError, ImageReader, Limits, Rgb32FImage, RgbImage};
use rtb_model::{JobRecords, Picture, PictureFlag, Thumbnail};

use crate::logsink::Log;
use crate::transfer::{self, CopyOptions, Listed};

/// The image files a render writes, by extension (lower case).
pub const EXTENSIONS: &[&str] = &[
    "png", "jpg", "jpeg", "ppm", "pgm", "pnm", "tif", "tiff", "bmp", "exr", "hdr",
];

/// The thumbnail's width at most (a card on the page).
pub const WIDTH: u32 = 320;
/// ... and its height at most (a very tall render is fitted into the card, not stretched).
pub const MAX_HEIGHT: u32 = 480;
/// The thumbnail's size at most, so that the page of a 100-job batch, thumbnails embedded,
/// stays under 2 MB. Smooth renders fit at full width and colour depth; a noisy one is
/// posterized, then made narrower, until it fits.
pub const BUDGET: usize = rtb_model::layout::THUMBNAIL_BUDGET;
/// Files at least this fraction of the largest image's size count as "the largest": among
/// them, the newest wins (the last frame of a sequence, not a small preview written later).
const LARGEST_SHARE: f64 = 0.5;
/// Decoding a render bigger than this (in memory) is not worth a thumbnail.
const MAX_DECODE_BYTES: u64 = 1 << 30;
/// The thumbnail's PUT gets this long: it must never hold up the result record for long.
const PUT_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether a key names an image file, by its extension.
pub fn is_image(rel: &str) -> bool {
    Path::new(rel)
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// The job's main image among the files an upload copies: of the image files, those at least
/// half the size of the largest; of those, the newest (ties: the last by key).
pub fn choose(files: &[Listed]) -> Option<&Listed> {
    let images: Vec<&Listed> = files.iter().filter(|f| is_image(&f.rel)).collect();
    let largest = images.iter().map(|f| f.size).max()?;
    let floor = (largest as f64 * LARGEST_SHARE) as u64;
    images
        .into_iter()
        .filter(|f| f.size >= floor)
        .max_by(|a, b| {
            let when = |f: &Listed| f.modified.unwrap_or(SystemTime::UNIX_EPOCH);
            when(a).cmp(&when(b)).then_with(|| a.rel.cmp(&b.rel))
        })
}

/// The picture of a job whose outputs are `files`, and its thumbnail's PNG bytes when one
/// was made. Blocking: decodes the image.
pub fn make(files: &[Listed]) -> (Picture, Option<Vec<u8>>) {
    let images = files.iter().filter(|f| is_image(&f.rel)).count() as u64;
    let Some(main) = choose(files) else {
        return (
            Picture {
                images,
                flag: Some(PictureFlag::NoImage),
                note: Some(format!(
                    "no image file among the outputs (looked for {})",
                    EXTENSIONS.join(", ")
                )),
                ..Picture::default()
            },
            None,
        );
    };
    let mut picture = Picture {
        images,
        path: Some(main.rel.clone()),
        bytes: main.size,
        ..Picture::default()
    };
    if main.size == 0 {
        picture.flag = Some(PictureFlag::Empty);
        picture.note = Some(format!("{} is empty (0 bytes)", main.rel));
        return (picture, None);
    }
    let img = match decode(&main.path, &mut picture) {
        Ok(img) => img,
        Err(Trouble::Flag(flag, note)) => {
            picture.flag = Some(flag);
            picture.note = Some(format!("{}: {note}", main.rel));
            return (picture, None);
        }
        Err(Trouble::NoThumbnail(note)) => {
            picture.note = Some(format!("{}: no thumbnail: {note}", main.rel));
            return (picture, None);
        }
    };
    let (png, width, height) = thumbnail(&img);
    picture.thumbnail = Some(Thumbnail {
        name: rtb_model::layout::THUMBNAIL_NAME.to_string(),
        width,
        height,
        bytes: png.len() as u64,
    });
    (picture, Some(png))
}

enum Trouble {
    /// The image itself is at fault.
    Flag(PictureFlag, String),
    /// The image may be fine; the runner could not make a thumbnail of it.
    NoThumbnail(String),
}

/// Read the header (pixels into `picture`), then the whole image.
fn decode(path: &Path, picture: &mut Picture) -> Result<DynamicImage, Trouble> {
    let open = || -> Result<ImageReader<std::io::BufReader<std::fs::File>>, Trouble> {
        let mut r = ImageReader::open(path)
            .map_err(|e| Trouble::NoThumbnail(format!("cannot open it: {e}")))?
            .with_guessed_format()
            .map_err(|e| Trouble::NoThumbnail(format!("cannot read it: {e}")))?;
        let mut limits = Limits::default();
        limits.max_alloc = Some(MAX_DECODE_BYTES);
        r.limits(limits);
        Ok(r)
    };
    let unreadable = |e: ImageError| match e {
        ImageError::Limits(l) => Trouble::NoThumbnail(format!("too large to decode here ({l})")),
        ImageError::Unsupported(u) => {
            Trouble::NoThumbnail(format!("a kind of image this runner cannot read ({u})"))
        }
        ImageError::IoError(io) if io.kind() != std::io::ErrorKind::UnexpectedEof => {
            Trouble::NoThumbnail(format!("cannot read it: {io}"))
        }
        other => Trouble::Flag(
            PictureFlag::Unreadable,
            format!("cannot be decoded, truncated or corrupt ({other})"),
        ),
    };
    let (w, h) = open()?.into_dimensions().map_err(unreadable)?;
    picture.width = Some(w);
    picture.height = Some(h);
    if w == 0 || h == 0 {
        return Err(Trouble::Flag(
            PictureFlag::NoPixels,
            format!("has no pixels ({w}x{h})"),
        ));
    }
    open()?.decode().map_err(unreadable)
}

/// The thumbnail's PNG and its size: at most [`WIDTH`] wide and [`MAX_HEIGHT`] high (never
/// enlarged), float images tone-mapped, within [`BUDGET`] bytes when it can be.
pub fn thumbnail(img: &DynamicImage) -> (Vec<u8>, u32, u32) {
    let (w, h) = fit(img.width(), img.height(), WIDTH, MAX_HEIGHT);
    let base: RgbImage = match img {
        DynamicImage::ImageRgb32F(_) | DynamicImage::ImageRgba32F(_) => {
            let linear: Rgb32FImage = img.to_rgb32f();
            tone_map(&image::imageops::thumbnail(&linear, w, h))
        }
        _ => image::imageops::thumbnail(&img.to_rgb8(), w, h),
    };
    // Fewer colour levels first (deflate then finds repeats), narrower last.
    const STEPS: &[(u32, u8)] = &[
        (WIDTH, 8),
        (WIDTH, 6),
        (WIDTH, 5),
        (240, 5),
        (160, 5),
        (160, 4),
        (120, 4),
        (80, 4),
    ];
    let mut last = (Vec::new(), 0, 0);
    let mut tried = Vec::new();
    for &(width, bits) in STEPS {
        let (sw, sh) = fit(base.width(), base.height(), width, MAX_HEIGHT);
        // A small render is already narrower than some steps: each size and depth once.
        if tried.contains(&(sw, bits)) {
            continue;
        }
        tried.push((sw, bits));
        let mut small = if sw == base.width() {
            base.clone()
        } else {
            image::imageops::thumbnail(&base, sw, sh)
        };
        posterize(&mut small, bits);
        let png = encode_png(&small);
        let fits = png.len() <= BUDGET;
        last = (png, sw, sh);
        if fits {
            break;
        }
    }
    last
}

/// `(w, h)` scaled to fit in `max_w` x `max_h`, keeping the aspect ratio, never enlarged,
/// never 0.
pub fn fit(w: u32, h: u32, max_w: u32, max_h: u32) -> (u32, u32) {
    if w <= max_w && h <= max_h {
        return (w.max(1), h.max(1));
    }
    let scale = (max_w as f64 / w as f64).min(max_h as f64 / h as f64);
    (
        ((w as f64 * scale).round() as u32).clamp(1, max_w),
        ((h as f64 * scale).round() as u32).clamp(1, max_h),
    )
}

/// Linear float pixels to display: Reinhard's global operator keyed on the log-average
/// luminance (a dim render and a bright one both come out readable), then sRGB encoding.
pub fn tone_map(linear: &Rgb32FImage) -> RgbImage {
    let lum = |p: &image::Rgb<f32>| {
        let c = |v: f32| if v.is_finite() { v.max(0.0) } else { 0.0 };
        0.2126 * c(p[0]) + 0.7152 * c(p[1]) + 0.0722 * c(p[2])
    };
    let n = (linear.width() as f64 * linear.height() as f64).max(1.0);
    let log_avg = (linear
        .pixels()
        .map(|p| (1e-4 + lum(p) as f64).ln())
        .sum::<f64>()
        / n)
        .exp();
    let scale = (0.18 / log_avg) as f32;
    RgbImage::from_fn(linear.width(), linear.height(), |x, y| {
        let p = linear.get_pixel(x, y);
        let l = lum(p) * scale;
        let k = if l > 0.0 { scale / (1.0 + l) } else { 0.0 };
        let out = |v: f32| {
            let v = if v.is_finite() { v.max(0.0) } else { 0.0 };
            (srgb((v * k).min(1.0)) * 255.0).round() as u8
        };
        image::Rgb([out(p[0]), out(p[1]), out(p[2])])
    })
}

/// Linear to sRGB-encoded, both in 0..=1.
fn srgb(v: f32) -> f32 {
    if v <= 0.003_130_8 {
        12.92 * v
    } else {
        1.055 * v.powf(1.0 / 2.4) - 0.055
    }
}

/// Keep `bits` levels of each channel, spread over the whole range.
fn posterize(img: &mut RgbImage, bits: u8) {
    if bits >= 8 {
        return;
    }
    let levels = (1u32 << bits) - 1;
    for v in img.iter_mut() {
        let q = (u32::from(*v) * levels + 127) / 255;
        *v = ((q * 255 + levels / 2) / levels) as u8;
    }
}

fn encode_png(img: &RgbImage) -> Vec<u8> {
    use image::codecs::png::{CompressionType, FilterType, PngEncoder};
    use image::ImageEncoder;
    let mut out = Vec::new();
    let enc = PngEncoder::new_with_quality(&mut out, CompressionType::Best, FilterType::Adaptive);
    // Encoding an in-memory RGB buffer into a Vec cannot fail.
    let _ = enc.write_image(
        img.as_raw(),
        img.width(),
        img.height(),
        image::ExtendedColorType::Rgb8,
    );
    out
}

/// Find the job's picture among what the output copy takes from `scratch`, put its thumbnail
/// into the job's records, and say what was found in the log. Never fails: what goes wrong is
/// in the picture's note.
pub async fn record(
    scratch: &Path,
    opts: &CopyOptions,
    s3: &aws_sdk_s3::Client,
    records: &JobRecords,
    log: &Log,
) -> Picture {
    let (dir, opts) = (scratch.to_path_buf(), opts.clone());
    let made = tokio::task::spawn_blocking(move || make(&transfer::listing(&dir, &opts))).await;
    let (mut picture, png) = match made {
        Ok(m) => m,
        Err(e) => (
            Picture {
                note: Some(format!("the thumbnail could not be made: {e}")),
                ..Picture::default()
            },
            None,
        ),
    };
    if let Some(png) = png {
        let put = s3
            .put_object()
            .bucket(records.bucket())
            .key(records.thumbnail_key())
            .content_type("image/png")
            .body(png.into())
            .send();
        let failed = match tokio::time::timeout(PUT_TIMEOUT, put).await {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(transfer::S3Cause::from_sdk(&e).to_string()),
            Err(_) => Some(format!(
                "no answer within {}",
                humantime::format_duration(PUT_TIMEOUT)
            )),
        };
        if let Some(why) = failed {
            picture.thumbnail = None;
            picture.note = Some(format!("the thumbnail could not be saved: {why}"));
        }
    }
    log.info(describe(&picture));
    picture
}

/// One log line about the picture.
pub fn describe(p: &Picture) -> String {
    let Some(path) = &p.path else {
        return format!(
            "picture: {}",
            p.note.as_deref().unwrap_or("no image among the outputs")
        );
    };
    let pixels = match (p.width, p.height) {
        (Some(w), Some(h)) => format!("{w}x{h}, "),
        _ => String::new(),
    };
    let mut line = format!(
        "picture: {path} ({pixels}{})",
        transfer::human_bytes(p.bytes)
    );
    if let Some(t) = &p.thumbnail {
        line.push_str(&format!(
            "; thumbnail {}x{} ({}) in the records",
            t.width,
            t.height,
            transfer::human_bytes(t.bytes)
        ));
    }
    if let Some(f) = p.flag {
        line.push_str(&format!("; FLAGGED: {}", f.describe()));
    }
    if let Some(n) = &p.note {
        line.push_str(&format!("; {n}"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn listed(rel: &str, size: u64, age_s: u64) -> Listed {
        Listed {
            path: PathBuf::from("/nowhere").join(rel),
            rel: rel.into(),
            size,
            modified: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 - age_s)),
        }
    }

    #[test]
    fn the_newest_of_the_largest_images_is_chosen() {
        // (files: key, bytes, age in seconds; the one chosen)
        type Files = &'static [(&'static str, u64, u64)];
        let table: &[(Files, Option<&str>)] = &[
            (&[], None),
            (&[("matlab.log", 900, 0), ("scene.mat", 10_000, 0)], None),
            (&[("a.png", 100, 5), ("b.PNG", 300, 9)], Some("b.PNG")),
            // A sequence of frames about the same size: the last one written.
            (
                &[
                    ("f1.exr", 1000, 30),
                    ("f2.exr", 990, 20),
                    ("f3.exr", 1010, 10),
                ],
                Some("f3.exr"),
            ),
            // A small preview written after the render does not win.
            (
                &[("render.hdr", 5000, 60), ("preview.jpg", 40, 1)],
                Some("render.hdr"),
            ),
            (
                &[("x/deep.tiff", 10, 1), ("notes.txt", 99_999, 0)],
                Some("x/deep.tiff"),
            ),
            // All empty: the newest empty one (then flagged).
            (&[("a.ppm", 0, 5), ("b.pgm", 0, 1)], Some("b.pgm")),
            // The same time: the last by key.
            (&[("a.bmp", 10, 1), ("b.jpeg", 10, 1)], Some("b.jpeg")),
        ];
        for (files, want) in table {
            let files: Vec<Listed> = files.iter().map(|(r, s, a)| listed(r, *s, *a)).collect();
            assert_eq!(choose(&files).map(|f| f.rel.as_str()), *want, "{files:?}");
        }
    }

    #[test]
    fn fitting_keeps_the_aspect_and_never_enlarges() {
        let table = [
            ((640, 480), (320, 240)),
            ((320, 200), (320, 200)),
            ((100, 50), (100, 50)),
            ((1920, 1080), (320, 180)),
            ((100, 2000), (24, 480)),
            ((10_000, 1), (320, 1)),
            ((0, 0), (1, 1)),
        ];
        for ((w, h), want) in table {
            assert_eq!(fit(w, h, WIDTH, MAX_HEIGHT), want, "{w}x{h}");
        }
    }

    #[test]
    fn posterizing_spreads_levels_over_the_range() {
        let mut img = RgbImage::from_fn(256, 1, |x, _| image::Rgb([x as u8, 0, 255]));
        posterize(&mut img, 1);
        let mut seen: Vec<u8> = img.pixels().map(|p| p[0]).collect();
        seen.dedup();
        assert_eq!(seen, [0, 255]);
        assert!(img.pixels().all(|p| p[1] == 0 && p[2] == 255));
    }

    /// A folder of outputs the test writes, and the upload's view of it.
    struct Scratch(tempfile::TempDir);

    impl Scratch {
        fn new() -> Scratch {
            Scratch(tempfile::tempdir().unwrap())
        }
        fn path(&self, rel: &str) -> PathBuf {
            let p = self.0.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            p
        }
        fn write(&self, rel: &str, bytes: &[u8]) {
            std::fs::write(self.path(rel), bytes).unwrap();
        }
        fn make(&self) -> (Picture, Option<Vec<u8>>) {
            make(&transfer::listing(self.0.path(), &CopyOptions::default()))
        }
    }

    /// A smooth render: a lit disc on a gradient.
    fn render(w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            let (dx, dy) = (x as f32 - w as f32 / 2.0, y as f32 - h as f32 / 2.0);
            let inside = dx * dx + dy * dy < (h as f32 / 3.0).powi(2);
            let g = (255 * y / h.max(1)) as u8;
            if inside {
                image::Rgb([230, 200 - g / 4, 40])
            } else {
                image::Rgb([20, g / 2, g])
            }
        })
    }

    fn decoded(png: &[u8]) -> RgbImage {
        image::load_from_memory_with_format(png, image::ImageFormat::Png)
            .expect("the thumbnail is a PNG")
            .to_rgb8()
    }

    #[test]
    fn a_png_render_gets_a_320_wide_thumbnail_and_its_pixels_recorded() {
        let s = Scratch::new();
        render(640, 480).save(s.path("renders/scene.png")).unwrap();
        s.write("matlab.log", b"done\n");
        let (p, png) = s.make();
        let png = png.expect("a thumbnail");
        assert_eq!(p.images, 1);
        assert_eq!(p.path.as_deref(), Some("renders/scene.png"));
        assert_eq!(
            p.bytes,
            std::fs::metadata(s.path("renders/scene.png"))
                .unwrap()
                .len()
        );
        assert_eq!((p.width, p.height), (Some(640), Some(480)));
        assert_eq!(p.flag, None, "{p:?}");
        let t = p.thumbnail.expect("thumbnail");
        assert_eq!((t.width, t.height, t.bytes), (320, 240, png.len() as u64));
        assert_eq!(t.name, "thumbnail.png");
        let img = decoded(&png);
        assert_eq!(img.dimensions(), (320, 240));
        // The picture survives the scaling: the disc's colour at the centre, the gradient's
        // dark top at a corner.
        let c = img.get_pixel(160, 120);
        assert!(c[0] > 200 && c[2] < 80, "centre {c:?}");
        let corner = img.get_pixel(2, 2);
        assert!(corner[0] < 40 && corner[2] < 40, "corner {corner:?}");
        assert!(png.len() <= BUDGET);
    }

    #[test]
    fn a_ppm_render_is_read_and_a_small_one_not_enlarged() {
        let s = Scratch::new();
        // P6 as the demo's Octave code writes it.
        let (w, h) = (96u32, 64u32);
        let mut ppm = format!("P6\n{w} {h}\n255\n").into_bytes();
        ppm.extend(render(w, h).into_raw());
        s.write("sphere.ppm", &ppm);
        let (p, png) = s.make();
        assert_eq!(p.flag, None, "{p:?}");
        assert_eq!((p.width, p.height), (Some(96), Some(64)));
        let img = decoded(&png.expect("a thumbnail"));
        assert_eq!(img.dimensions(), (96, 64));
        assert_eq!(img.get_pixel(48, 32), render(w, h).get_pixel(48, 32));
    }

    #[test]
    fn an_exr_render_is_tone_mapped() {
        let s = Scratch::new();
        // Linear radiance far above 1 (a bright scene): clipped, it would be all white.
        let hdr = Rgb32FImage::from_fn(400, 200, |x, _| {
            let v = 50.0 + 400.0 * x as f32 / 400.0;
            image::Rgb([v, v * 0.5, v * 0.1])
        });
        DynamicImage::ImageRgb32F(hdr)
            .save(s.path("out/frame.exr"))
            .unwrap();
        let (p, png) = s.make();
        assert_eq!(p.flag, None, "{p:?}");
        assert_eq!((p.width, p.height), (Some(400), Some(200)));
        let img = decoded(&png.expect("a thumbnail"));
        assert_eq!(img.dimensions(), (320, 160));
        let (left, right) = (img.get_pixel(2, 80), img.get_pixel(317, 80));
        assert!(left[0] < right[0], "{left:?} {right:?}");
        assert!(right[0] < 255 && left[0] > 40, "{left:?} {right:?}");
        // Hue kept: red over green over blue.
        assert!(left[0] > left[1] && left[1] > left[2], "{left:?}");
    }

    #[test]
    fn a_noisy_render_is_kept_within_the_budget() {
        let s = Scratch::new();
        let mut seed = 7u32;
        let noise = RgbImage::from_fn(1280, 960, |_, _| {
            let mut next = || {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (seed >> 24) as u8
            };
            image::Rgb([next(), next(), next()])
        });
        noise.save(s.path("noise.png")).unwrap();
        let (p, png) = s.make();
        let png = png.expect("a thumbnail");
        assert!(png.len() <= BUDGET, "{} bytes", png.len());
        let t = p.thumbnail.unwrap();
        assert!(t.width <= WIDTH && t.width >= 80, "{t:?}");
        assert_eq!(decoded(&png).width(), t.width);
    }

    #[test]
    fn no_image_empty_no_pixels_and_truncated_are_flagged() {
        // No image at all.
        let s = Scratch::new();
        s.write("matlab.log", b"ok\n");
        s.write("result.mat", &[1, 2, 3]);
        let (p, png) = s.make();
        assert_eq!(
            (p.flag, p.images, png.is_none()),
            (Some(PictureFlag::NoImage), 0, true)
        );

        // An empty file.
        let s = Scratch::new();
        s.write("render.png", b"");
        let (p, png) = s.make();
        assert_eq!(p.flag, Some(PictureFlag::Empty), "{p:?}");
        assert_eq!((p.bytes, png.is_none()), (0, true));
        assert!(p.thumbnail.is_none());

        // A header that says 0 pixels.
        let s = Scratch::new();
        s.write("render.ppm", b"P6\n0 0\n255\n");
        let (p, png) = s.make();
        assert!(
            matches!(
                p.flag,
                Some(PictureFlag::NoPixels | PictureFlag::Unreadable)
            ),
            "{p:?}"
        );
        assert!(png.is_none());

        // Truncated: the renderer exited 0 half way through writing it.
        for (name, cut) in [("render.png", 3usize), ("render.ppm", 2), ("render.exr", 2)] {
            let s = Scratch::new();
            let whole = s.path(&format!("whole/{name}"));
            let img = render(200, 100);
            if name.ends_with(".exr") {
                DynamicImage::ImageRgb32F(DynamicImage::ImageRgb8(img).to_rgb32f())
                    .save(&whole)
                    .unwrap();
            } else {
                img.save(&whole).unwrap();
            }
            let bytes = std::fs::read(&whole).unwrap();
            std::fs::remove_dir_all(whole.parent().unwrap()).unwrap();
            s.write(name, &bytes[..bytes.len() / cut]);
            let (p, png) = s.make();
            assert_eq!(p.flag, Some(PictureFlag::Unreadable), "{name}: {p:?}");
            assert!(png.is_none(), "{name}");
            assert!(p.note.as_deref().unwrap_or("").contains(name), "{p:?}");
        }
    }

    #[test]
    fn tone_mapping_brings_any_exposure_into_range() {
        for exposure in [1e-3f32, 1.0, 1e4] {
            let img = Rgb32FImage::from_fn(8, 1, |x, _| {
                let v = exposure * (x as f32 + 1.0);
                image::Rgb([v, v * 0.5, f32::NAN])
            });
            let out = tone_map(&img);
            let reds: Vec<u8> = out.pixels().map(|p| p[0]).collect();
            // Brighter in, brighter out; neither all black nor all white.
            assert!(
                reds.windows(2).all(|w| w[0] <= w[1]),
                "{exposure}: {reds:?}"
            );
            assert!(reds[0] > 10 && reds[7] < 255, "{exposure}: {reds:?}");
            assert!(out.pixels().all(|p| p[2] == 0), "NaN is black");
        }
    }
}
